/**
 * Mounts a VPool with one of the two FUSE engines (DESIGN §1 `--fuse-engine`) behind the same handlers,
 * stop fence and observer (handlers.ts):
 * - `kernel` (default): vpoolfs speaks the FUSE protocol on /dev/fuse itself (fuse/kernel/, docs/fuse-engine.md);
 * - `fuse-native`: the libfuse2 package (native-mount.ts).
 */
import { buildHandlers } from './handlers.js';
import { mountKernel } from './kernel/mount.js';
import { DEFAULT_FUSE_ENGINE, type MountOptions, type Mounted } from './mount-types.js';
import { mountNative } from './native-mount.js';

export { DEFAULT_FUSE_ENGINE, FUSE_ENGINES, type Change, type FuseEngine, type MountOptions, type Mounted } from './mount-types.js';

export async function mountVPool(opts: MountOptions): Promise<Mounted> {
  const engine = opts.engine ?? DEFAULT_FUSE_ENGINE;
  const h = buildHandlers(opts.vpool, opts.mountpoint, opts.observer, opts.apiInfo);
  if (engine === 'fuse-native') return mountNative(opts, h);
  return mountKernel(opts, h);
}
