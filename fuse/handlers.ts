/**
 * The handlers both engines serve: ops-tree, ops-io and xattr over one open-file table, wrapped by the
 * stop fence (fence.ts) and, when metrics are on, the observer (observe.ts). Engine-agnostic: each
 * handler takes a path and answers through a callback `(code, ...values)`; the engines (native-mount.ts,
 * kernel/) turn requests into these calls and the answers into their own replies.
 */
import type { VPool } from '../volume/types.js';
import { FdTable } from './fds.js';
import { Fence } from './fence.js';
import { instrument, type OpObserver } from './observe.js';
import { ioOps } from './ops-io.js';
import { treeOps, type OpContext } from './ops-tree.js';
import { xattrOps } from './xattr.js';
import { registerMount } from './xattr-snapshot.js';

export type Handler = (...args: any[]) => void;
export type Handlers = Record<string, Handler>;

export interface MountHandlers {
  ops: Handlers;
  fds: FdTable;
  fence: Fence;
}

export function buildHandlers(vpool: VPool, mountpoint: string, observer?: OpObserver, apiInfo?: () => Record<string, unknown>): MountHandlers {
  const ctx: OpContext = { vpool, fds: new FdTable(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, apiInfo };
  let ops: Handlers = { ...treeOps(ctx), ...ioOps(ctx), ...xattrOps(ctx) };
  registerMount(vpool, ctx.fds, mountpoint);
  const fence = new Fence();
  fence.guard(ops);
  if (observer) ops = instrument(ops, observer);
  return { ops, fds: ctx.fds, fence };
}
