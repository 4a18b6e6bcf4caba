/**
 * Kernel-engine opcodes on extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR. The size
 * probe (size 0 → the length) and a buffer too small (ERANGE) are answered here. Non-`user.*` GETXATTR
 * never gets here: a reader thread answers it (reader.ts). A successful `user.vdisk.rollback` changes the
 * vDisk's data behind the kernel's back: its cached pages and attributes are invalidated before the reply.
 */
import type { OpHandler } from './context.js';
import type { decode } from './decode.js';
import { dataReply, emptyReply, xattrSizeReply } from './encode.js';
import { pathOf } from './ops-common.js';
import { E } from '../errno.js';

type Req<K extends keyof typeof decode> = ReturnType<(typeof decode)[K]>;

/** Commands after which the kernel's cached pages or attributes (a template's mode) of the vDisk are stale. */
const INVALIDATES = new Set(['user.vdisk.rollback', 'user.vdisk.template']);

export const setxattr: OpHandler<Req<'setxattr'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path === undefined) return;
  ctx.ops.setxattr(path, r.name, r.value, 0, r.flags, (code: number) => {
    if (code < 0) return ctx.fail(h, code);
    if (INVALIDATES.has(r.name)) ctx.invalidate(h.nodeid);
    ctx.send(emptyReply(h.unique));
  });
};

function fit(size: number, value: Buffer, unique: number): Buffer | number {
  if (size === 0) return xattrSizeReply(unique, value.length);
  if (value.length > size) return E.ERANGE;
  return dataReply(unique, value);
}

export const getxattr: OpHandler<Req<'getxattr'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path === undefined) return;
  ctx.ops.getxattr(path, r.name, 0, (code: number, value?: Buffer) => {
    if (code < 0 || value === undefined) return ctx.fail(h, code < 0 ? code : E.ENODATA);
    const out = fit(r.size, value, h.unique);
    if (typeof out === 'number') ctx.fail(h, out);
    else ctx.send(out);
  });
};

export const listxattr: OpHandler<Req<'listxattr'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path === undefined) return;
  ctx.ops.listxattr(path, (code: number, names?: string[]) => {
    if (code < 0 || names === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    const out = fit(r.size, Buffer.from(names.map((n) => `${n}\0`).join('')), h.unique);
    if (typeof out === 'number') ctx.fail(h, out);
    else ctx.send(out);
  });
};

export const removexattr: OpHandler<Req<'name'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path !== undefined) ctx.ops.removexattr(path, r.name, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};
