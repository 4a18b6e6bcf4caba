/**
 * The fuse-native engine (`--fuse-engine fuse-native`): libfuse2 through the fuse-native package.
 * Mount options: `big_writes,max_write=131072` (128 KiB writes instead of 4 KiB pieces), no per-operation
 * timeout (a slow backend must never turn into ETIMEDOUT), a stale mount cleared first (force), the
 * mountpoint created if missing (mkdir), and, as root, allow_other + default_permissions so that
 * hypervisors running as other users can open the vDisks.
 *
 * The handlers answer engine-agnostic values (NodeStat, StatFs, names and stats); nativeAdapt() turns
 * them into what fuse-native's C glue reads. fuse-native has no fallocate or lseek: those stay unused.
 */
import type { FuseOpts } from 'fuse-native';
import { logger } from '../util/log.js';
import type { NodeStat, StatFs } from '../volume/types.js';
import type { Handlers, MountHandlers } from './handlers.js';
import type { EngineOptions, Mounted } from './mount-types.js';
import { VpoolFuse } from './native.js';
import { toFuseStatfs, toStatArray } from './stat.js';

const log = logger('fuse');

export const MAX_WRITE = 131072;

/** Wraps the handlers whose answers fuse-native wants in its own shapes. */
function nativeAdapt(ops: Handlers): Handlers {
  const out: Handlers = { ...ops };
  delete out.fallocate;
  delete out.lseek;
  type Cb = (code: number, ...rest: unknown[]) => void;
  const statCb = (cb: Cb) => (code: number, st?: NodeStat) => (code < 0 || st === undefined ? cb(code) : cb(0, toStatArray(st)));
  out.getattr = (path: string, cb: Cb) => ops.getattr(path, statCb(cb));
  out.fgetattr = (path: string, fd: number, cb: Cb) => ops.fgetattr(path, fd, statCb(cb));
  out.statfs = (path: string, cb: Cb) => ops.statfs(path, (code: number, s?: StatFs) => (code < 0 || s === undefined ? cb(code) : cb(0, toFuseStatfs(s))));
  // fuse-native would take the stats as its own stat objects: names only
  out.readdir = (path: string, cb: Cb) => ops.readdir(path, (code: number, names?: string[]) => (code < 0 ? cb(code) : cb(0, names)));
  return out;
}

export async function mountNative(opts: EngineOptions, h: MountHandlers): Promise<Mounted> {
  const isRoot = process.getuid?.() === 0;
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
  const fuse = new VpoolFuse(opts.mountpoint, nativeAdapt(h.ops), fuseOpts, extra);
  const options = fuse._fuseOptions();

  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  log.info('mounted', { mountpoint: fuse.mnt, vpool: opts.vpool.name, engine: 'fuse-native', options });

  let unmounted: Promise<void> | undefined;
  return {
    mountpoint: fuse.mnt,
    engine: 'fuse-native',
    options,
    fds: h.fds,
    fence: () => h.fence.close(),
    // libfuse2 through fuse-native has no notify call: its caches expire on their own (1 s attributes)
    changed: async () => undefined,
    unmount() {
      unmounted ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => {
          if (err) return reject(err);
          log.info('unmounted', { mountpoint: fuse.mnt, vpool: opts.vpool.name, engine: 'fuse-native', options });
          resolve();
        }),
      );
      return unmounted;
    },
  };
}
