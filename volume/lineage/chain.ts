/**
 * The TLog chain of a vDisk as its doc says it, read from the backend alone: the clone base, then the
 * segments of the applied scrub (TLogs up to `scrub.upTo` replaced), then the original TLogs after it;
 * TLogs and segments a rollback dropped are skipped. Also the SCOs of a vDisk that its descendants'
 * clone bases name (pins: a scrub keeps them whole). docs/scrubbing.md.
 */
import { VolumeError } from '../../util/errors.js';
import type { BlobStore } from '../backend/types.js';
import { backendTlogs, tlogKey } from '../datapath/formats/backend-layout.js';
import { ClusterMap } from '../datapath/formats/cluster-map.js';
import { applyTo, decodeBaseInto, baseKey, type DiskState } from './clone-base.js';
import { backendDocKey, isDropped, parseDoc, type VDiskDoc } from './snapshot-store.js';
import { decodeRecords, type TLogRecord } from '../datapath/formats/tlog-format.js';
import { segmentKey, type ScrubDocFields } from './scrub-state.js';

export type ChainDoc = VDiskDoc & ScrubDocFields;

export interface ChainItem {
  /** The TLog number (or, for a segment, the last TLog it replaces). */
  end: number;
  key: string;
  segment: boolean;
}

/** The chain's items up to TLog `upTo`, in replay order. `tlogs`: the TLog numbers in the backend (listed if absent). */
export async function chainItems(backend: BlobStore, id: string, doc: ChainDoc, upTo = Infinity, tlogs?: number[]): Promise<ChainItem[]> {
  const listed = tlogs ?? (await backendTlogs(backend, id));
  const from = doc.scrub?.upTo ?? 0;
  const items: ChainItem[] = [];
  if (doc.scrub !== undefined) {
    for (const end of doc.scrub.segments) {
      if (end <= upTo && !isDropped(doc, end)) items.push({ end, key: segmentKey(id, doc.scrub.id, end), segment: true });
    }
  }
  for (const n of [...listed].sort((a, b) => a - b)) {
    if (n > from && n <= upTo && !isDropped(doc, n)) items.push({ end: n, key: tlogKey(id, n), segment: false });
  }
  return items;
}

/** The records of one chain item; CHECKSUM if the object is damaged. */
export async function readItem(backend: BlobStore, id: string, item: ChainItem): Promise<TLogRecord[]> {
  const { records, error } = decodeRecords(await backend.get(item.key));
  if (error !== null) {
    const what = item.segment ? 'scrub segment' : 'TLog';
    throw new VolumeError('CHECKSUM', `${what} ${item.end} of vDisk ${id} in the backend is damaged: ${error}`, { vdisk: id, object: item.key, reason: error });
  }
  return records;
}

/**
 * The state of vDisk `id` as of TLog `upTo` (Infinity: its head) from the backend alone: its base if it is
 * a clone, then its chain (a scrub's segments, the TLogs after them, none a rollback dropped). A damaged
 * TLog or segment is a CHECKSUM error.
 */
export async function stateAt(backend: BlobStore, id: string, doc: ChainDoc, upTo = Infinity): Promise<DiskState> {
  const s: DiskState = { map: new ClusterMap(), size: 0, scoCounts: new Map() };
  if (doc.parent !== null) decodeBaseInto(await backend.get(baseKey(id)), s, baseKey(id));
  for (const item of await chainItems(backend, id, doc, upTo)) for (const r of await readItem(backend, id, item)) applyTo(s, r);
  return s;
}

/** The doc of vDisk `id` as the backend has it (an empty one if there is none). */
export async function backendDoc(backend: BlobStore, id: string): Promise<ChainDoc | null> {
  const key = backendDocKey(id);
  if ((await backend.head(key)) === null) return null;
  return parseDoc(await backend.get(key), key) as ChainDoc;
}

/**
 * The SCOs of vDisk `id` that a clone base names: for each descendant (a vDisk whose `ancestors` hold `id`
 * at index k-1), its base entries of depth k. `candidates`: the vDisk ids to look at (the backend's tree,
 * and whatever else the caller knows of, e.g. clones being made).
 */
export async function descendantPins(backend: BlobStore, id: string, candidates: Iterable<string>): Promise<Set<number>> {
  const pins = new Set<number>();
  for (const c of new Set(candidates)) {
    if (c === id) continue;
    const doc = await backendDoc(backend, c);
    if (doc === null || doc.parent === null) continue;
    const k = doc.ancestors.indexOf(id) + 1;
    if (k === 0) continue;
    const s: DiskState = { map: new ClusterMap(), size: 0, scoCounts: new Map() };
    decodeBaseInto(await backend.get(baseKey(c)), s, baseKey(c));
    for (const [, loc] of s.map.entries()) if (loc.depth === k) pins.add(loc.sco);
  }
  return pins;
}
