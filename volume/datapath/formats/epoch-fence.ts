/**
 * The fence in the data: what a router that took a vPool over (a new claim epoch, volume/claim/claim.ts)
 * accepted of each vDisk's history, so that late uploads of the router it replaced — a zombie that was
 * paused or cut off and resumed — count for nothing, even on a backend without conditional writes (S3):
 *
 *   vdisks/<id>/fence/<epoch, 16 hex>   {epoch, router, acceptedTlog, acceptedSco, firstTlog, firstSco, at}
 *
 * Written once per vDisk by the new holder when it rebuilds the vDisk from the backend at a takeover, before
 * it serves it. `acceptedTlog`/`acceptedSco`: the highest TLog and SCO in the backend it took as the vDisk's
 * history; `firstTlog`/`firstSco`: where its own numbering starts, FENCE_GAP past every number in the backend
 * (so the zombie, numbering on from its own counters, never writes a key the new holder writes).
 * A TLog or SCO number n counts only if every fence with firstX > n has acceptedX >= n: a number in an older
 * epoch's range that was not in the backend when that epoch ended is a zombie's late upload, ignored by every
 * replay from the backend (backendTlogs) and garbage for a later gc. Uploads of one vDisk go in order (a
 * TLog after its SCOs, TLog n+1 after n), so "not listed at the takeover" is "above the highest listed".
 * A backend without fence objects has no fence: every number counts, as before.
 */
import type { BlobStore } from '../../backend/types.js';
import { isCode } from '../../../util/errors.js';

/** Numbers left free between two epochs' ranges (a zombie would have to ship 65536 TLogs unfenced to cross it). */
export const FENCE_GAP = 0x10000;

export interface VDiskFence {
  epoch: number;
  router: string;
  acceptedTlog: number;
  acceptedSco: number;
  firstTlog: number;
  firstSco: number;
  /** Wall-clock ms when it was written. */
  at: number;
}

export const fencePrefix = (id: string): string => `vdisks/${id}/fence/`;
export const fenceKey = (id: string, epoch: number): string => `${fencePrefix(id)}${epoch.toString(16).padStart(16, '0')}`;

/** vDisk `id`'s fences, oldest epoch first. */
export async function vdiskFences(backend: BlobStore, id: string): Promise<VDiskFence[]> {
  const out: VDiskFence[] = [];
  for (const key of await backend.list(fencePrefix(id))) {
    try {
      out.push(JSON.parse((await backend.get(key)).toString()) as VDiskFence);
    } catch (err) {
      if (!isCode(err, 'NOT_FOUND')) throw err; // removed with the vDisk meanwhile
    }
  }
  return out.sort((a, b) => a.epoch - b.epoch);
}

/** Whether TLog `n` is part of the vDisk's history under `fences` (see the header). */
export function tlogCounts(fences: readonly VDiskFence[], n: number): boolean {
  for (const f of fences) if (n < f.firstTlog && n > f.acceptedTlog) return false;
  return true;
}

/** Whether SCO `n` may be part of the vDisk's history under `fences` (see the header). */
export function scoCounts(fences: readonly VDiskFence[], n: number): boolean {
  for (const f of fences) if (n < f.firstSco && n > f.acceptedSco) return false;
  return true;
}
