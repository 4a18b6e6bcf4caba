/**
 * The types of a mount, shared by fuse/mount.ts and both engines (kept apart so that no engine imports mount.ts).
 */
import type { VPool } from '../volume/types.js';
import type { FdTable } from './fds.js';
import type { OpObserver } from './observe.js';

export type FuseEngine = 'kernel' | 'fuse-native';
export const FUSE_ENGINES: readonly FuseEngine[] = ['kernel', 'fuse-native'];
export const DEFAULT_FUSE_ENGINE: FuseEngine = 'kernel';

export interface MountOptions {
  vpool: VPool;
  mountpoint: string;
  /** Default `kernel`. */
  engine?: FuseEngine;
  /** Receives every operation's result and latency (metrics); none by default. */
  observer?: OpObserver;
  /** Debug output: libfuse's on stderr (fuse-native), every request logged at debug (kernel). */
  debug?: boolean;
  /** Kernel engine: the kernel ended the session without unmount() (an `umount` from outside, an abort). */
  onLost?: (why: string) => void;
}

export interface Mounted {
  readonly mountpoint: string;
  readonly engine: FuseEngine;
  /** The mount options string. */
  readonly options: string;
  readonly fds: FdTable;
  /** Refuses every new change (EIO) and resolves once the running ones have answered: call before the final ship. */
  fence(): Promise<void>;
  /** Unmounts; with files still open, lazily (like `fusermount -uz`): open files see errors afterwards. */
  unmount(): Promise<void>;
}
