/**
 * The shape of a table of `user.vdisk.*` entries (fuse/vdisk-xattr.ts merges one per feature: xattr-snapshot.ts,
 * xattr-dtl.ts). In a file of its own so that the feature tables and the dispatcher do not import each other.
 */
import type { VPool } from '../volume/types.js';

/** A command: `value` is the attribute's bytes as UTF-8. Resolves when the operation is done. */
export type VdiskCommand = (vpool: VPool, path: string, value: string) => Promise<void>;
/** A view: the JSON-able value `getfattr` shows. */
export type VdiskView = (vpool: VPool, path: string) => unknown;

export interface VdiskXattrTable {
  commands: Record<string, VdiskCommand>;
  views: Record<string, VdiskView>;
}
