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
  /**
   * What `getfattr -n user.vpool.api` answers on every node of the mount (JSON): how the CLI finds the
   * management API of the vPool a path is on (tools/client/locate.ts). Absent: ENODATA.
   */
  apiInfo?: () => Record<string, unknown>;
}

/**
 * What the engines need of a mount: the vPool only for its name (a follower router mounts a vPool it does not
 * open: its handlers forward to the owner, router-link/follower-table.ts).
 */
export type EngineOptions = Omit<MountOptions, 'vpool'> & { vpool: Pick<VPool, 'name'> };

/** How a path changed behind the kernel's back (the management API changes vDisks without going through the mount). */
export type Change = 'data' | 'attrs' | 'gone';

export interface Mounted {
  readonly mountpoint: string;
  readonly engine: FuseEngine;
  /** The mount options string. */
  readonly options: string;
  readonly fds: FdTable;
  /** Refuses every new change (EIO) and resolves once the running ones have answered: call before the final ship. */
  fence(): Promise<void>;
  /**
   * Tells the kernel that `path` (absolute in the vPool) changed without a request of this mount: its cached
   * pages and attributes are dropped (`data`, `attrs`) or its name forgotten (`gone`). Kernel engine only
   * (fuse-native keeps nothing cached for longer than its 1 s attribute timeout and has no notify call).
   */
  changed(path: string, how: Change): Promise<void>;
  /** Unmounts; with files still open, lazily (like `fusermount -uz`): open files see errors afterwards. */
  unmount(): Promise<void>;
}
