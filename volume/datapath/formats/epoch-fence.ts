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
 *
 * Owner-tag fences (ownership per vDisk, docs/cluster.md): a router that starts serving one vDisk without a new
 * claim epoch — a router the vDisk was delegated to, or the vPool's holder taking it back — writes
 *
 *   vdisks/<id>/fence/t<owner tag, 16 hex>   {epoch: 0, tag, router, accepted…, first…, at}
 *
 * with the owner tag of the registry's handover transaction. The 't' keeps these keys apart from the claim
 * epochs' (16 hex digits only) and sorts them after them; the filter reads every fence alike and needs no order
 * between them (each one excludes its own gap), and a new owner numbers past every number in the backend, so
 * the ranges of the two kinds never overlap.
 */
import type { BlobStore } from '../../backend/types.js';
import { isCode } from '../../../util/errors.js';

/** Numbers left free between two epochs' ranges (a zombie would have to ship 65536 TLogs unfenced to cross it). */
export const FENCE_GAP = 0x10000;

export interface VDiskFence {
  /** The claim epoch of a takeover of the vPool; 0 in an owner-tag fence. */
  epoch: number;
  /** An owner-tag fence: the registry's owner tag of the vDisk's handover (see the header). */
  tag?: number;
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

export const tagFenceKey = (id: string, tag: number): string => `${fencePrefix(id)}t${tag.toString(16).padStart(16, '0')}`;

/** Whether `fences` hold a claim fence of `epoch` or later: a takeover of that epoch wrote its fence already. */
export const hasEpochFence = (fences: readonly VDiskFence[], epoch: number): boolean => fences.some((f) => f.tag === undefined && f.epoch >= epoch);

/** Whether `fences` hold an owner-tag fence of `tag` or later. */
export const hasTagFence = (fences: readonly VDiskFence[], tag: number): boolean => fences.some((f) => f.tag !== undefined && f.tag >= tag);

/** vDisk `id`'s fences: claim fences oldest epoch first, then owner-tag fences oldest tag first. */
export async function vdiskFences(backend: BlobStore, id: string): Promise<VDiskFence[]> {
  const out: VDiskFence[] = [];
  for (const key of await backend.list(fencePrefix(id))) {
    try {
      out.push(JSON.parse((await backend.get(key)).toString()) as VDiskFence);
    } catch (err) {
      if (!isCode(err, 'NOT_FOUND')) throw err; // removed with the vDisk meanwhile
    }
  }
  return out.sort((a, b) => (a.tag ?? -1) - (b.tag ?? -1) || a.epoch - b.epoch);
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
