/**
 * The DTL part of the `user.vdisk.*` API (DESIGN §3), merged into ./vdisk-xattr.ts:
 *
 *   user.vdisk.dtl none|async|sync    change this vDisk's DTL mode live (anything else: EINVAL)
 *
 * The state it leads to (`ok_sync`, `catchup`, `degraded`, `ok_standalone`) is in `user.vdisk.info`.
 */
import { VolumeError } from '../util/errors.js';
import type { DtlMode, VPool } from '../volume/types.js';
import type { VdiskXattrTable } from './xattr-table.js';

const MODES: readonly string[] = ['none', 'async', 'sync'];

async function setDtl(vpool: VPool, path: string, value: string): Promise<void> {
  if (!MODES.includes(value)) throw new VolumeError('INVALID', `user.vdisk.dtl: expected none, async or sync, got ${JSON.stringify(value.slice(0, 64))}`, { path });
  await vpool.setDtlMode(path, value as DtlMode);
}

export const dtlTable: VdiskXattrTable = {
  commands: { 'user.vdisk.dtl': setDtl },
  views: {},
};
