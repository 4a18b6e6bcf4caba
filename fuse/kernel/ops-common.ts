/**
 * Small helpers shared by the kernel engine's opcode handlers: resolving node ids to paths, and
 * answering an entry (node id + attributes) after a handler made or found a node.
 */
import { E } from '../errno.js';
import type { NodeStat } from '../../volume/types.js';
import type { KernelCtx } from './context.js';
import type { InHeader } from './decode.js';
import { entryReply } from './encode.js';

/** The path of the request's node; answers ENOENT and returns undefined for an unknown or unlinked node. */
export function pathOf(ctx: KernelCtx, h: InHeader): string | undefined {
  const p = ctx.nodes.path(h.nodeid);
  if (p === undefined) ctx.fail(h, E.ENOENT);
  return p;
}

/** The path of `name` in the request's directory; answers (ENOENT, or ENAMETOOLONG) and returns undefined if none. */
export function childOf(ctx: KernelCtx, h: InHeader, name: string): string | undefined {
  if (Buffer.byteLength(name) > 255) {
    ctx.fail(h, E.ENAMETOOLONG);
    return undefined;
  }
  const p = ctx.nodes.child(h.nodeid, name);
  if (p === undefined) ctx.fail(h, E.ENOENT);
  return p;
}

/** Stats `path` through the getattr handler and answers an entry for it (one more kernel reference). */
export function replyEntry(ctx: KernelCtx, h: InHeader, path: string): void {
  ctx.ops.getattr(path, (code: number, st?: NodeStat) => {
    if (code < 0 || st === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    ctx.send(entryReply(h.unique, ctx.nodes.remember(path), st, ctx.entryValidS, ctx.attrValidS));
  });
}

/** A callback for handlers that answer only a code: an empty reply on success, then `after`. */
export function emptyOr(ctx: KernelCtx, h: InHeader, reply: (code: number) => void): (code: number) => void {
  return (code: number) => (code < 0 ? ctx.fail(h, code) : reply(code));
}
