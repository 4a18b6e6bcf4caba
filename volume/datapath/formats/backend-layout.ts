/**
 * Where things live in the backend. One vPool per backend URL (a bucket prefix or a directory):
 *
 *   pool/tree.json              the directory tree, each vDisk's configuration and plain xattrs (epoch 0:
 *                               a backend from before claims)
 *   pool/tree/<epoch>.json      the same, shipped by the holder of claim epoch <epoch> (16 hex digits); the
 *                               highest epoch's is the tree (a zombie of an older epoch cannot replace it)
 *   pool/claim/<epoch>          the claim on the vPool (../claim/claim.ts)
 *   vdisks/<id>/sco/<n>         SCOs (see sco-format.ts)
 *   vdisks/<id>/tlog/<n>        TLogs (see tlog-format.ts), uploaded after the SCOs they name
 *   vdisks/<id>/fence/<epoch>   what a new claim holder accepted of the vDisk's history (./epoch-fence.ts)
 */
import type { BlobStore } from '../../backend/types.js';
import { scoName } from './sco-format.js';
import { tlogName } from './tlog-format.js';
import { tlogCounts, vdiskFences } from './epoch-fence.js';

export const TREE_KEY = 'pool/tree.json';
export const TREE_PREFIX = 'pool/tree/';
/** Where the holder of claim epoch `epoch` ships the tree (epoch 0: the key from before claims). */
export const treeKey = (epoch: number): string => (epoch === 0 ? TREE_KEY : `${TREE_PREFIX}${epoch.toString(16).padStart(16, '0')}.json`);
export const vdiskPrefix = (id: string): string => `vdisks/${id}/`;
export const scoKey = (id: string, sco: number): string => `vdisks/${id}/sco/${scoName(sco)}`;
export const tlogKey = (id: string, tlog: number): string => `vdisks/${id}/tlog/${tlogName(tlog)}`;

/** The number at the end of a SCO or TLog key. */
export function keyNumber(key: string): number {
  return parseInt(key.slice(key.lastIndexOf('/') + 1), 16);
}

/**
 * The numbers of vDisk `id`'s TLogs in the backend, ascending (every replay from the backend starts here),
 * without the late uploads of a fenced router (./epoch-fence.ts).
 */
export async function backendTlogs(backend: BlobStore, id: string): Promise<number[]> {
  const fences = await vdiskFences(backend, id);
  return (await listedTlogs(backend, id)).filter((n) => tlogCounts(fences, n));
}

/**
 * Every TLog number in the backend, fenced or not, ascending (for numbering past them); with `after`, only
 * those above it — listed from there (StartAfter), not from the first: a rebuild that starts from a map
 * checkpoint lists only what came after it. Names are 8 hex digits (numbers are u32 in every format), so
 * byte order is number order. Filtered here too: a wrapper store that ignored the option costs time, not
 * correctness.
 */
export async function listedTlogs(backend: BlobStore, id: string, after?: number): Promise<number[]> {
  return listedNumbers(backend, `vdisks/${id}/tlog/`, after === undefined ? undefined : tlogKey(id, after), after);
}

/** Every SCO number in the backend, fenced or not, ascending; with `after`, only those above it (as listedTlogs). */
export async function listedScos(backend: BlobStore, id: string, after?: number): Promise<number[]> {
  return listedNumbers(backend, `vdisks/${id}/sco/`, after === undefined ? undefined : scoKey(id, after), after);
}

async function listedNumbers(backend: BlobStore, prefix: string, startAfter: string | undefined, after: number | undefined): Promise<number[]> {
  const keys = await backend.list(prefix, startAfter === undefined ? undefined : { startAfter });
  const out = keys.map(keyNumber);
  return (after === undefined ? out : out.filter((n) => n > after)).sort((a, b) => a - b);
}
