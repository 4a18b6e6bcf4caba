/**
 * Mounts a VPool with fuse-native and unmounts it. The handlers come from ops-tree, ops-io and xattr;
 * mount options: `big_writes,max_write=131072` (128 KiB writes instead of 4 KiB pieces), no per-operation
 * timeout (a slow backend must never turn into ETIMEDOUT), a stale mount cleared first (force), the
 * mountpoint created if missing (mkdir), and, as root, allow_other + default_permissions so that
 * hypervisors running as other users can open the vDisks.
 */
import type { FuseOpts } from 'fuse-native';
import { logger } from '../util/log.js';
import type { VPool } from '../volume/types.js';
import { FdTable } from './fds.js';
import { Fence } from './fence.js';
import { VpoolFuse } from './native.js';
import { instrument, type OpObserver } from './observe.js';
import { ioOps } from './ops-io.js';
import { treeOps, type OpContext } from './ops-tree.js';
import { xattrOps } from './xattr.js';
import { registerMount } from './xattr-snapshot.js';

const log = logger('fuse');

export const MAX_WRITE = 131072;

export interface MountOptions {
  vpool: VPool;
  mountpoint: string;
  /** Receives every operation's result and latency (metrics); none by default. */
  observer?: OpObserver;
  /** libfuse debug output on stderr. */
  debug?: boolean;
}

export interface Mounted {
  readonly mountpoint: string;
  /** The `-o` string handed to libfuse. */
  readonly options: string;
  readonly fds: FdTable;
  /** Refuses every new change (EIO) and resolves once the running ones have answered: call before the final ship. */
  fence(): Promise<void>;
  /** Unmounts (lazily, like `fusermount -uz`); open files see errors afterwards. */
  unmount(): Promise<void>;
}

export async function mountVPool(opts: MountOptions): Promise<Mounted> {
  const isRoot = process.getuid?.() === 0;
  const ctx: OpContext = { vpool: opts.vpool, fds: new FdTable(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  let ops: Record<string, (...args: any[]) => void> = { ...treeOps(ctx), ...ioOps(ctx), ...xattrOps(ctx) };
  registerMount(opts.vpool, ctx.fds, opts.mountpoint);
  const fence = new Fence();
  fence.guard(ops);
  if (opts.observer) ops = instrument(ops, opts.observer);

  const fuseOpts: FuseOpts = {
    force: true,
    mkdir: true,
    timeout: false,
    fsname: `vpoolfs:${opts.vpool.name}`,
    subtype: 'vpoolfs',
    debug: opts.debug ?? false,
  };
  const extra = ['big_writes', `max_write=${MAX_WRITE}`];
  if (isRoot) extra.push('allow_other', 'default_permissions');
  const fuse = new VpoolFuse(opts.mountpoint, ops, fuseOpts, extra);
  const options = fuse._fuseOptions();

  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  log.info('mounted', { mountpoint: fuse.mnt, vpool: opts.vpool.name, options });

  let unmounted: Promise<void> | undefined;
  return {
    mountpoint: fuse.mnt,
    options,
    fds: ctx.fds,
    fence: () => fence.close(),
    unmount() {
      unmounted ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => {
          if (err) return reject(err);
          log.info('unmounted', { mountpoint: fuse.mnt, vpool: opts.vpool.name, options });
          resolve();
        }),
      );
      return unmounted;
    },
  };
}
