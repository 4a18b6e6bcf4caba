/**
 * Where a rebuild from the backend (../vdisk/vdisk-open.ts rebuildFromBackend) starts its chain, with work
 * proportional to what came after the newest map checkpoint rather than to the vDisk's whole history:
 *
 *  - the checkpoints, newest first, each judged from its own record against the backend's doc and the
 *    fences (coverMismatch): the items it covers must be exactly those the chain has up to its last one —
 *    the applied scrub's segments, then TLog ranges none of which a scrub replaced, a rollback dropped or a
 *    fence excluded;
 *  - then only the TLog keys from the checkpoint's last TLog on are listed (StartAfter), which must still be
 *    there, and the SCO keys past the highest SCO it names;
 *  - without a fitting checkpoint (or with `load` off): every TLog and SCO key, as a rebuild always did.
 *
 * Why a checkpoint's covered part needs neither the listing nor the hashing of its keys is in
 * docs/durability.md ("Map checkpoints", "Starting after the checkpoint").
 */
import type { Logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import { isCode } from '../../util/errors.js';
import { listedScos, listedTlogs } from '../datapath/formats/backend-layout.js';
import { tlogCounts, type VDiskFence } from '../datapath/formats/epoch-fence.js';
import { chainItems, type ChainDoc, type ChainItem } from './chain.js';
import { checkpointPrefix, decodeCheckpoint, type Checkpoint, type CheckpointHeader, type FoundCheckpoint } from './map-checkpoint.js';
import { isDropped } from './snapshot-store.js';

export interface ChainStart {
  /** The checkpoint the state starts from, or null (the clone base or nothing). */
  found: FoundCheckpoint | null;
  /** How many chain items the checkpoint covers (0 without one). */
  covered: number;
  /** The chain items to replay: those after the checkpoint, in order (all of them without one). */
  items: ChainItem[];
  /** TLog numbers listed, fenced or not, ascending: every one, or those above `tlogFloor`. */
  tlogs: number[];
  /** SCO numbers listed, fenced or not, ascending: every one, or those above `scoFloor`. */
  scos: number[];
  /** 0, or the checkpoint's last item's TLog number: no TLog at or below it was listed. */
  tlogFloor: number;
  /** 0, or the highest own SCO the checkpoint names: no SCO at or below it was listed. */
  scoFloor: number;
  /** The highest TLog the checkpoint covers as a TLog (not a scrub segment), 0 if none. */
  coveredTlog: number;
}

/**
 * Why checkpoint `h` cannot be the start of vDisk `id`'s chain under the backend's `doc` and `fences`,
 * judged from its own record (no listing), or null. The chain (./chain.ts chainItems) is the applied
 * scrub's segments not dropped, then the listed TLogs above the scrub's `upTo` that the fences count and
 * no rollback dropped, ascending: a prefix of it ending at `h.lastEnd` is those segments up to there and
 * TLogs of that kind up to there.
 */
export function coverMismatch(h: CheckpointHeader, id: string, doc: ChainDoc, fences: readonly VDiskFence[]): string | null {
  if (h.vdisk !== id) return `it is vDisk ${h.vdisk}'s`;
  if (h.parent !== (doc.parent?.uuid ?? null)) return 'made under another clone parent';
  const segments = doc.scrub === undefined ? [] : doc.scrub.segments.filter((end) => end <= h.lastEnd && !isDropped(doc, end));
  if (segments.length === 0 ? h.scrub !== null : h.scrub === null || h.scrub.id !== doc.scrub!.id || h.scrub.segments.join() !== segments.join()) {
    return 'the scrub segments it covers are not those of the applied scrub (a scrub or a rollback changed the chain)';
  }
  let count = segments.length;
  let prev = doc.scrub?.upTo ?? 0; // TLogs up to there are replaced by the segments: in no chain any more
  for (const [a, b] of h.tlogRanges) {
    if (a > b || a <= prev) return 'it covers TLogs a scrub replaced (or its ranges are not ascending)';
    if (doc.dropped.some(([x, y]) => a <= y && x <= b)) return 'it covers TLogs a rollback dropped';
    // a fence excludes the numbers between what it accepted and where its holder's own numbering starts
    const fence = fences.find((f) => Math.max(a, f.acceptedTlog + 1) <= Math.min(b, f.firstTlog - 1));
    if (fence !== undefined) return `it covers TLogs that fence ${fence.epoch} (router ${fence.router}) excluded: a fenced router's late uploads`;
    count += b - a + 1;
    prev = b;
  }
  const lastEnd = h.tlogRanges.length > 0 ? prev : (segments[segments.length - 1] ?? 0);
  if (h.items === 0 || count !== h.items || lastEnd !== h.lastEnd) return `its header does not add up (${h.items} items ending at ${h.lastEnd}, its ranges say ${count} ending at ${lastEnd})`;
  return null;
}

/**
 * The checkpoint at `key`, or null when it is gone (garbage-collected meanwhile) or not sound (torn or damaged:
 * logged). A backend that does not answer throws: so does the rest of the rebuild.
 */
export async function readCheckpoint(backend: BlobStore, id: string, key: string, log: Logger): Promise<Checkpoint | null> {
  try {
    return decodeCheckpoint(await backend.get(key));
  } catch (err) {
    if (isCode(err, 'NOT_FOUND')) return null;
    if (isCode(err, 'BACKEND') || isCode(err, 'CLOSED')) throw err;
    log.warn('a map checkpoint in the backend is not sound (torn or damaged): ignored', { vdisk: id, object: key, reason: (err as Error).message });
    return null;
  }
}

/** The newest checkpoint that fits (see the header), with the keys after it; else the whole listing. */
export async function chainStart(backend: BlobStore, id: string, doc: ChainDoc, fences: readonly VDiskFence[],
  opts: { load: boolean; log: Logger }): Promise<ChainStart> {
  const { log } = opts;
  const keys = opts.load ? await backend.list(checkpointPrefix(id)) : [];
  for (const key of [...keys].reverse()) {
    const cp = await readCheckpoint(backend, id, key, log);
    if (cp === null) continue;
    const h = cp.header;
    const why = coverMismatch(h, id, doc, fences);
    if (why !== null) {
      log.info('a map checkpoint does not fit the chain: ignored', { vdisk: id, object: key, reason: why });
      continue;
    }
    const coveredTlog = h.tlogRanges.length > 0 ? h.lastEnd : 0;
    // listed from its last TLog on (StartAfter the number before): that TLog must still be in the backend
    const tlogs = await listedTlogs(backend, id, coveredTlog > 0 ? coveredTlog - 1 : h.lastEnd);
    if (coveredTlog > 0 && tlogs[0] !== coveredTlog) {
      log.info('a map checkpoint ends at a TLog the backend no longer has: ignored', { vdisk: id, object: key, tlog: coveredTlog });
      continue;
    }
    const after = tlogs.filter((n) => n > h.lastEnd);
    const items = (await chainItems(backend, id, doc, Infinity, after.filter((n) => tlogCounts(fences, n)))).filter((i) => i.end > h.lastEnd);
    return {
      found: { key, cp }, covered: h.items, items, tlogs: after, scos: await listedScos(backend, id, h.lastSco),
      tlogFloor: h.lastEnd, scoFloor: h.lastSco, coveredTlog,
    };
  }
  const tlogs = await listedTlogs(backend, id);
  const items = await chainItems(backend, id, doc, Infinity, tlogs.filter((n) => tlogCounts(fences, n)));
  return { found: null, covered: 0, items, tlogs, scos: await listedScos(backend, id), tlogFloor: 0, scoFloor: 0, coveredTlog: 0 };
}
