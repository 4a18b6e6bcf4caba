/**
 * Kernel-engine opcodes on names and nodes: LOOKUP, FORGET, BATCH_FORGET, GETATTR, SETATTR, MKNOD, MKDIR,
 * UNLINK, RMDIR, RENAME, RENAME2, STATFS, ACCESS. Each resolves node ids to paths (nodes.ts), calls the
 * engine-agnostic handler, and encodes the answer.
 */
import type { NodeStat, StatFs } from '../../volume/types.js';
import { E } from '../errno.js';
import type { KernelCtx, OpHandler } from './context.js';
import type { decode, InHeader } from './decode.js';
import { attrReply, emptyReply, statfsReply } from './encode.js';
import { childOf, pathOf, replyEntry } from './ops-common.js';
import { FATTR, GETATTR_FH, RENAME_NOREPLACE } from './protocol.js';

type Req<K extends keyof typeof decode> = ReturnType<(typeof decode)[K]>;

export const lookup: OpHandler<Req<'name'>> = (ctx, h, { name }) => {
  const path = childOf(ctx, h, name);
  if (path !== undefined) replyEntry(ctx, h, path);
};

export const forget: OpHandler<Req<'forget'>> = (ctx, h, { nlookup }) => ctx.nodes.forget(h.nodeid, nlookup);

export const batchForget: OpHandler<Req<'batchForget'>> = (ctx, _h, { items }) => {
  for (const f of items) ctx.nodes.forget(f.nodeid, f.nlookup);
};

function replyAttr(ctx: KernelCtx, h: InHeader, path: string, fh: number | undefined): void {
  const done = (code: number, st?: NodeStat) => (code < 0 || st === undefined ? ctx.fail(h, code < 0 ? code : E.EIO) : ctx.send(attrReply(h.unique, st, ctx.attrValidS)));
  if (fh !== undefined) ctx.ops.fgetattr(path, fh, done);
  else ctx.ops.getattr(path, done);
}

export const getattr: OpHandler<Req<'getattr'>> = (ctx, h, req) => {
  const path = pathOf(ctx, h);
  if (path !== undefined) replyAttr(ctx, h, path, req.flags & GETATTR_FH ? req.fh : undefined);
};

/**
 * SETATTR: one request may change mode, owner, size and times; each goes to its handler in turn
 * (chmod, chown, truncate/ftruncate, utimens) and the first failure answers. A size change with an
 * open handle goes through ftruncate (the open vDisk). KILL_SUIDGID (HANDLE_KILLPRIV_V2) drops the
 * set-id bits. A shrink also invalidates the node's cached pages past the new size (the kernel does too).
 */
export const setattr: OpHandler<Req<'setattr'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path === undefined) return;
  const fh = r.valid & FATTR.FH ? r.fh : undefined;
  const steps: ((next: (code: number) => void) => void)[] = [];
  let shrunk = false;
  if (r.valid & FATTR.MODE) steps.push((next) => ctx.ops.chmod(path, r.mode & 0o7777, next));
  else if (r.valid & FATTR.KILL_SUIDGID) steps.push((next) => killSuidgid(ctx, path, next));
  if (r.valid & (FATTR.UID | FATTR.GID)) {
    steps.push((next) => ctx.ops.chown(path, r.valid & FATTR.UID ? r.uid : -1, r.valid & FATTR.GID ? r.gid : -1, next));
  }
  if (r.valid & FATTR.SIZE) {
    steps.push((next) =>
      ctx.ops.getattr(path, (code: number, st?: NodeStat) => {
        if (code < 0) return next(code);
        shrunk = st !== undefined && r.size < st.size;
        if (fh !== undefined) ctx.ops.ftruncate(path, fh, r.size, next);
        else ctx.ops.truncate(path, r.size, next);
      }),
    );
  }
  if (r.valid & (FATTR.ATIME | FATTR.MTIME | FATTR.ATIME_NOW | FATTR.MTIME_NOW)) {
    steps.push((next) =>
      ctx.ops.getattr(path, (code: number, st?: NodeStat) => {
        if (code < 0 || st === undefined) return next(code < 0 ? code : E.EIO);
        // the handler takes 0 as "now" (UTIME_NOW); an unchanged stamp keeps its value
        const a = r.valid & FATTR.ATIME_NOW ? 0 : r.valid & FATTR.ATIME ? r.atime * 1000 + r.atimensec / 1e6 : st.atimeMs;
        const m = r.valid & FATTR.MTIME_NOW ? 0 : r.valid & FATTR.MTIME ? r.mtime * 1000 + r.mtimensec / 1e6 : st.mtimeMs;
        ctx.ops.utimens(path, a, m, next);
      }),
    );
  }
  const run = (i: number): void => {
    if (i === steps.length) {
      replyAttr(ctx, h, path, fh);
      if (shrunk) ctx.invalidate(h.nodeid);
      return;
    }
    steps[i]((code) => (code < 0 ? ctx.fail(h, code) : run(i + 1)));
  };
  run(0);
};

/** Clears S_ISUID/S_ISGID if set (HANDLE_KILLPRIV_V2: the filesystem does what the kernel no longer does). */
export function killSuidgid(ctx: KernelCtx, path: string, next: (code: number) => void): void {
  ctx.ops.getattr(path, (code: number, st?: NodeStat) => {
    if (code < 0 || st === undefined || (st.mode & 0o6000) === 0) return next(code < 0 ? code : 0);
    ctx.ops.chmod(path, st.mode & 0o1777, next);
  });
}

export const mknod: OpHandler<Req<'mknod'>> = (ctx, h, r) => {
  const path = childOf(ctx, h, r.name);
  if (path === undefined) return;
  ctx.ops.mknod(path, r.mode, r.rdev, (code: number) => (code < 0 ? ctx.fail(h, code) : replyEntry(ctx, h, path)));
};

export const mkdir: OpHandler<Req<'mkdir'>> = (ctx, h, r) => {
  const path = childOf(ctx, h, r.name);
  if (path === undefined) return;
  ctx.ops.mkdir(path, r.mode, (code: number) => (code < 0 ? ctx.fail(h, code) : replyEntry(ctx, h, path)));
};

function removal(op: 'unlink' | 'rmdir'): OpHandler<Req<'name'>> {
  return (ctx, h, { name }) => {
    const path = childOf(ctx, h, name);
    if (path === undefined) return;
    ctx.ops[op](path, (code: number) => {
      if (code < 0) return ctx.fail(h, code);
      ctx.nodes.detach(path);
      ctx.send(emptyReply(h.unique));
    });
  };
}
export const unlink = removal('unlink');
export const rmdir = removal('rmdir');

/** RENAME and RENAME2: flags 0, or RENAME_NOREPLACE (EEXIST if the target exists); RENAME_EXCHANGE and others: EINVAL. */
export const rename: OpHandler<Req<'rename2'>> = (ctx, h, r) => {
  if (r.flags & ~RENAME_NOREPLACE) return ctx.fail(h, E.EINVAL);
  const from = childOf(ctx, h, r.oldname);
  if (from === undefined) return;
  const to = ctx.nodes.child(r.newdir, r.newname);
  if (to === undefined) return ctx.fail(h, E.ENOENT);
  const go = () =>
    ctx.ops.rename(from, to, (code: number) => {
      if (code < 0) return ctx.fail(h, code);
      ctx.nodes.rename(from, to);
      ctx.send(emptyReply(h.unique));
    });
  if (!(r.flags & RENAME_NOREPLACE)) return go();
  // the handlers answer synchronously from the tree, so nothing can slip in between the check and the rename call
  ctx.ops.getattr(to, (code: number) => (code === 0 ? ctx.fail(h, E.EEXIST) : code === E.ENOENT ? go() : ctx.fail(h, code)));
};

export const statfs: OpHandler<unknown> = (ctx, h) => {
  ctx.ops.statfs('/', (code: number, s?: StatFs) => (code < 0 || s === undefined ? ctx.fail(h, code < 0 ? code : E.EIO) : ctx.send(statfsReply(h.unique, s))));
};

export const access: OpHandler<Req<'access'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path !== undefined) ctx.ops.access(path, r.mask, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};
