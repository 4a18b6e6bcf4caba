/**
 * Pure: what one segment of a TLog chain (the records between two snapshot points) still does at its end,
 * and the compact records that do exactly that (docs/scrubbing.md, "Compact segment").
 *
 * Replaying a segment over any starting map: each address ends with its last write in the segment unless
 * a later shrink in the segment cleared it; addresses at or past the smallest size the segment set are
 * cleared if not written afterwards; a DISCARD clears its range unless written afterwards; the size ends at
 * the last resize. So the compact form is Resize(min) · the segment's DISCARDs · the surviving writes ·
 * Resize(final) (no resizes when the segment had none). The DISCARDs are kept even though this segment's own
 * discarded slots are gone: they still clear what earlier segments (or a clone's base) mapped there, and every
 * write after a discard is among the surviving writes, which come after them.
 * Locations are packed as sco * 65536 + slot (a slot is 16 bits in the map), exact in a double.
 */
import { RecordType, type TLogRecord } from '../datapath/formats/tlog-format.js';
import { CLUSTER_SIZE } from '../types.js';

export const pack = (sco: number, slot: number): number => sco * 65536 + slot;
export const scoOfPacked = (loc: number): number => Math.floor(loc / 65536);
export const slotOfPacked = (loc: number): number => loc % 65536;

export interface SegmentEnd {
  /** address → packed location of the writes that survive to the segment's end. */
  entries: Map<number, number>;
  /** The smallest size the segment set, null if it had no resize. */
  minSize: number | null;
  /** The last size it set, null if it had no resize. */
  finalSize: number | null;
  /** Slot count of every SCO the segment names (the TLog records' counts). */
  counts: Map<number, number>;
  /** The crc of each SCO record (kept when a record is rewritten with dead slots). */
  crcs: Map<number, number>;
  /** The DISCARD ranges of the segment, in log order. */
  discards: Array<{ first: number; count: number }>;
}

export function newSegmentEnd(): SegmentEnd {
  return { entries: new Map(), minSize: null, finalSize: null, counts: new Map(), crcs: new Map(), discards: [] };
}

/** Folds `records` (in log order) into `seg`. Call for each TLog of the segment in order. */
export function foldRecords(seg: SegmentEnd, records: Iterable<TLogRecord>): void {
  for (const r of records) {
    if (r.type === RecordType.Sco) {
      seg.counts.set(r.sco, r.count);
      seg.crcs.set(r.sco, r.crc);
      for (let i = 0; i < r.count; i++) if (r.addresses[i] >= 0) seg.entries.set(r.addresses[i], pack(r.sco, i));
    } else if (r.type === RecordType.Resize) {
      const bound = Math.ceil(r.size / CLUSTER_SIZE);
      for (const a of seg.entries.keys()) if (a >= bound) seg.entries.delete(a);
      seg.minSize = seg.minSize === null ? r.size : Math.min(seg.minSize, r.size);
      seg.finalSize = r.size;
    } else if (r.type === RecordType.Discard) {
      // the slots it unmaps are garbage like overwritten ones; walk whichever is smaller, range or entries
      const end = r.first + r.count;
      if (r.count <= seg.entries.size) {
        for (let a = r.first; a < end; a++) seg.entries.delete(a);
      } else {
        for (const a of seg.entries.keys()) if (a >= r.first && a < end) seg.entries.delete(a);
      }
      seg.discards.push({ first: r.first, count: r.count });
    }
  }
}

/**
 * Ends the fold: entries past the final size are dropped (a growing write that failed leaves its slots
 * there; every rebuild clears them too, and they must not show if the vDisk grows later).
 */
export function finishSegment(seg: SegmentEnd): SegmentEnd {
  if (seg.finalSize !== null) {
    const bound = Math.ceil(seg.finalSize / CLUSTER_SIZE);
    for (const a of seg.entries.keys()) if (a >= bound) seg.entries.delete(a);
  }
  return seg;
}

/**
 * The compact records of a segment whose surviving entries now live at `placed` (address → packed location,
 * old or new), `counts` giving each named SCO's slot count and `crcs` its record crc (0 when unknown).
 * Records are per SCO, ascending; dead slots are −1 (replay skips them; the count is kept for ranged reads).
 */
export function compactRecords(seg: SegmentEnd, placed: Map<number, number>, counts: Map<number, number>, crcs: Map<number, number>): TLogRecord[] {
  const bySco = new Map<number, Float64Array>();
  for (const [a, loc] of placed) {
    const sco = scoOfPacked(loc);
    let addrs = bySco.get(sco);
    if (addrs === undefined) {
      const count = counts.get(sco);
      if (count === undefined) throw new Error(`compactRecords: no slot count for SCO ${sco}`);
      addrs = new Float64Array(count).fill(-1);
      bySco.set(sco, addrs);
    }
    addrs[slotOfPacked(loc)] = a;
  }
  const out: TLogRecord[] = [];
  if (seg.minSize !== null) out.push({ type: RecordType.Resize, size: seg.minSize });
  for (const d of seg.discards) out.push({ type: RecordType.Discard, first: d.first, count: d.count });
  for (const sco of [...bySco.keys()].sort((x, y) => x - y)) {
    const addresses = bySco.get(sco)!;
    out.push({ type: RecordType.Sco, sco, count: addresses.length, crc: crcs.get(sco) ?? 0, addresses });
  }
  if (seg.finalSize !== null && seg.finalSize !== seg.minSize) out.push({ type: RecordType.Resize, size: seg.finalSize });
  return out;
}
