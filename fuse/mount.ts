/**
 * Mounts a VPool with one of the two FUSE engines (DESIGN §1 `--fuse-engine`) behind the same handlers,
 * stop fence and observer (handlers.ts):
 * - `kernel` (default): vpoolfs speaks the FUSE protocol on /dev/fuse itself (fuse/kernel/, docs/fuse-engine.md);
 * - `fuse-native`: the libfuse2 package (native-mount.ts).
 */
import { buildHandlers, type MountHandlers } from './handlers.js';
import { mountKernel } from './kernel/mount.js';
import { DEFAULT_FUSE_ENGINE, type EngineOptions, type MountOptions, type Mounted } from './mount-types.js';
import { mountNative } from './native-mount.js';

export { DEFAULT_FUSE_ENGINE, FUSE_ENGINES, type Change, type EngineOptions, type FuseEngine, type MountOptions, type Mounted } from './mount-types.js';

export async function mountVPool(opts: MountOptions): Promise<Mounted> {
  return mountWith(opts, buildHandlers(opts.vpool, opts.mountpoint, opts.observer, opts.apiInfo));
}

/** Mounts a handler table built elsewhere (the owner's, also served on its router link; a follower's). */
export function mountWith(opts: EngineOptions, h: MountHandlers): Promise<Mounted> {
  if ((opts.engine ?? DEFAULT_FUSE_ENGINE) === 'fuse-native') return mountNative(opts, h);
  return mountKernel(opts, h);
}
