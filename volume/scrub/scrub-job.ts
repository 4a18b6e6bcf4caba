/**
 * The scrub job of one vDisk (docs/scrubbing.md): reads only the backend and a scratch directory, writes
 * new SCOs, compact segment TLogs, the relocations and the result under its own scrub id, and deletes
 * nothing. The vDisk's owner applies the result (apply.ts) or refuses it as stale. Runs in the owner's
 * process (`vpoolfs scrub PATH`) or anywhere else with the backend (`vpoolfs scrub --backend URL`).
 *
 * Crash (kill -9 at any point): only objects under this scrub id exist, nothing names them; the result
 * object is put last, so a result that exists is whole. The sweep of a later apply or `vpoolfs gc` removes them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import { checkSlot, encodeSlotHeader, namespaceTag, SLOT_HEADER, SLOT_SIZE } from '../datapath/formats/sco-format.js';
import { encodeRecord, RecordType, type TLogRecord } from '../datapath/formats/tlog-format.js';
import { CLUSTER_SIZE } from '../types.js';
import { crc32 } from 'node:zlib';
import { emptyDoc } from '../lineage/snapshot-store.js';
import { backendDoc, chainItems, descendantPins, readItem, type ChainDoc, type ChainItem } from '../lineage/chain.js';
import { pinCandidates } from './tree-vdisks.js';
import { throttledStore, type Throttle } from './throttle.js';
import { compactRecords, finishSegment, foldRecords, newSegmentEnd, pack, scoOfPacked, slotOfPacked, type SegmentEnd } from './compact.js';
import {
  MAX_SCO, newScrubId, relocationsKey, resultKey, scoKeyIn, SCRUB_SCO_BASE, scrubScoKey, segmentKey,
  type ScoRange, type ScrubResult, type ScrubStats,
} from '../lineage/scrub-state.js';

const log = logger('scrub');

export const DEFAULT_FILL_RATIO = 0.75;
/** Dead slots between two live ones that a scrub still reads through (one ranged GET instead of two). */
const READ_GAP = 8;

export interface ScrubProgress {
  vdisk: string;
  phase: 'reading TLogs' | 'copying' | 'writing segments' | 'done';
  segmentsDone: number;
  segments: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface ScrubJobOptions {
  /** Where live slots are gathered before they are written in address order (one segment at a time). */
  scratchDir: string;
  /** A SCO whose live share is below this is rewritten (default 0.75). */
  fillRatio?: number;
  /** Slots per new SCO (default 1024). */
  scoClusters?: number;
  now?: () => number;
  onProgress?: (p: ScrubProgress) => void;
  /** More vDisk ids whose clone bases may pin this vDisk's SCOs (besides the backend's tree). */
  candidates?: Iterable<string>;
  /** Called between steps: a test kills the job there. */
  checkpoint?: (what: string) => Promise<void> | void;
  /** The budget and the yielding to the vDisk's I/O (throttle.ts): every backend call of the job waits for it. */
  throttle?: Throttle;
}

interface Range {
  /**
   * The segment's name: the last TLog it replaces (its last chain item), not the snapshot point that closes
   * it. A snapshot taken right after a rollback names a TLog the rollback dropped (openTlogNumber - 1), and
   * every replay skips dropped numbers: a segment named so would vanish from the chain with all it holds.
   * The last item is in the chain, so not dropped; it is > the previous point and ≤ this one, so the
   * segments a point replays (end ≤ its TLog) are the same.
   */
  end: number;
  items: ChainItem[];
  seg: SegmentEnd;
}

/** Scrubs vDisk `id` as the backend has it; returns (and puts) the result for its owner. */
export async function scrubVDisk(store: BlobStore, id: string, opts: ScrubJobOptions): Promise<ScrubResult> {
  const backend = opts.throttle === undefined ? store : throttledStore(store, opts.throttle);
  const now = opts.now ?? Date.now;
  const t0 = Date.now();
  const fillRatio = opts.fillRatio ?? DEFAULT_FILL_RATIO;
  const scoClusters = opts.scoClusters ?? 1024;
  if (!(fillRatio >= 0 && fillRatio <= 1)) throw new VolumeError('INVALID', `fill ratio must be in 0..1, got ${fillRatio}`, { fillRatio });
  // no document yet: a vDisk that never had a snapshot (its doc is shipped with the first change)
  const doc: ChainDoc = (await backendDoc(backend, id)) ?? emptyDoc();
  const scrubId = newScrubId(now(), randomUUID().replace(/-/g, ''));
  const tag = namespaceTag(id);
  const stats: ScrubStats = {
    tlogsRead: 0, scosRead: 0, bytesRead: 0, bytesWritten: 0, garbageBytesBefore: 0, bytesFreed: 0,
    scosRewritten: 0, scosDropped: 0, scosPinned: 0, newScos: 0, ms: 0,
  };
  const progress = (phase: ScrubProgress['phase'], done: number, total: number): void =>
    opts.onProgress?.({ vdisk: id, phase, segmentsDone: done, segments: total, bytesRead: stats.bytesRead, bytesWritten: stats.bytesWritten });
  const check = async (what: string): Promise<void> => {
    if (opts.checkpoint !== undefined) await opts.checkpoint(what);
  };

  // 1. the chain and its horizon; segments end at every snapshot point up to it
  const items = await chainItems(backend, id, doc);
  const horizon = items.length === 0 ? 0 : items[items.length - 1].end;
  const points = [...new Set([...doc.snapshots.map((s) => s.tlog).filter((t) => t < horizon), horizon])].sort((a, b) => a - b);
  const ranges: Range[] = [];
  let k = 0;
  for (const point of points) {
    const r: Range = { end: point, items: [], seg: newSegmentEnd() };
    while (k < items.length && items[k].end <= point) r.items.push(items[k++]);
    if (r.items.length === 0) continue;
    r.end = r.items[r.items.length - 1].end;
    ranges.push(r);
  }
  progress('reading TLogs', 0, ranges.length);
  for (const r of ranges) {
    for (const item of r.items) {
      const body = await readItem(backend, id, item);
      stats.tlogsRead++;
      foldRecords(r.seg, body);
    }
    finishSegment(r.seg);
  }
  await check('read');

  // 2. live slots (end states of the segments) and the clone pins
  const counts = new Map<number, number>();
  const crcs = new Map<number, number>();
  const live = new Map<number, number>(); // sco → live slots
  const scoRange = new Map<number, number>(); // sco → index of the range naming it
  ranges.forEach((r, i) => {
    for (const [sco, c] of r.seg.counts) {
      counts.set(sco, c);
      scoRange.set(sco, i);
    }
    for (const [sco, c] of r.seg.crcs) crcs.set(sco, c);
    for (const loc of r.seg.entries.values()) live.set(scoOfPacked(loc), (live.get(scoOfPacked(loc)) ?? 0) + 1);
  });
  const pins = await descendantPins(backend, id, [...(await pinCandidates(backend)), ...(opts.candidates ?? [])]);

  // 3. which SCOs to rewrite (some live, under the fill ratio), which vanish (none live), which stay
  const rewrite = new Set<number>();
  let garbageAfter = 0;
  for (const [sco, count] of counts) {
    const n = live.get(sco) ?? 0;
    if (pins.has(sco)) {
      stats.scosPinned++;
      continue;
    }
    stats.garbageBytesBefore += (count - n) * SLOT_SIZE;
    if (n === 0) {
      stats.scosDropped++;
      stats.bytesFreed += count * SLOT_SIZE;
    } else if (n < fillRatio * count) {
      rewrite.add(sco);
      stats.scosRewritten++;
      stats.bytesFreed += count * SLOT_SIZE;
    } else garbageAfter += (count - n) * SLOT_SIZE;
  }
  const oldScos = [...counts.keys()]; // what the old chain names (the new chain may name fewer: `unnamed`)
  const compactAlready = items.every((i) => i.segment) && stats.scosDropped === 0 && rewrite.size === 0;
  const prevRanges = doc.scrub?.scoRanges ?? [];
  const nextFree = Math.max(SCRUB_SCO_BASE, ...prevRanges.map((r) => r.to + 1));
  const basis: ScrubResult['basis'] = {
    docGen: doc.gen, prevScrub: doc.scrub?.id ?? null, dropped: doc.dropped.filter(([a]) => a <= horizon), points,
  };
  if (compactAlready) {
    stats.ms = Date.now() - t0;
    progress('done', ranges.length, ranges.length);
    log.info('scrub: nothing to rewrite, the chain is compact already', { vdisk: id, horizon, ...stats });
    return {
      version: 1, vdisk: id, scrubId, basis, state: doc.scrub ?? { id: scrubId, upTo: 0, segments: [], scoRanges: [], ranAt: now(), garbageBytes: garbageAfter },
      newScos: [], unnamed: [], relocations: 0, nothingToDo: true, stats,
    };
  }

  // 4. copy the live slots of the rewritten SCOs, segment by segment, in address order, into new SCOs
  fs.mkdirSync(opts.scratchDir, { recursive: true });
  const scratch = path.join(opts.scratchDir, `scrub-${id}-${scrubId}.slots`);
  let nextSco = nextFree;
  const newScos: Array<[number, number]> = [];
  const placedPer: Array<Map<number, number>> = [];
  try {
    for (let ri = 0; ri < ranges.length; ri++) {
      const r = ranges[ri];
      progress('copying', ri, ranges.length);
      const placed = new Map(r.seg.entries);
      const moving = [...r.seg.entries].filter(([, loc]) => rewrite.has(scoOfPacked(loc)));
      if (moving.length > 0) {
        // gather: each rewritten SCO of this segment read once, its live slots verified and kept in the scratch file
        const fd = fs.openSync(scratch, 'w+');
        try {
          const at = new Map<number, number>(); // address → index in the scratch file
          const byOld = new Map<number, Array<[number, number]>>();
          for (const [a, loc] of moving) {
            const sco = scoOfPacked(loc);
            let l = byOld.get(sco);
            if (l === undefined) byOld.set(sco, (l = []));
            l.push([a, slotOfPacked(loc)]);
          }
          let idx = 0;
          for (const sco of [...byOld.keys()].sort((x, y) => x - y)) {
            const key = scoKeyIn(id, prevRanges, sco);
            const live = byOld.get(sco)!.sort((x, y) => x[1] - y[1]);
            stats.scosRead++;
            // ranged reads of the live slots only, runs merged across gaps of up to READ_GAP dead slots
            for (let i = 0; i < live.length;) {
              let j = i + 1;
              while (j < live.length && live[j][1] - live[j - 1][1] <= READ_GAP + 1) j++;
              const first = live[i][1];
              const buf = await backend.getRange(key, first * SLOT_SIZE, (live[j - 1][1] - first + 1) * SLOT_SIZE);
              stats.bytesRead += buf.length;
              progress('copying', ri, ranges.length);
              for (const [a, slot] of live.slice(i, j)) {
                const pos = (slot - first) * SLOT_SIZE;
                const why = checkSlot(buf, pos, tag, sco, slot, a);
                if (why !== null) {
                  throw new VolumeError('CHECKSUM', `scrub of vDisk ${id}: slot ${slot} of ${key} failed its check (${why}); nothing was changed`, { vdisk: id, object: key, slot, reason: why });
                }
                fs.writeSync(fd, buf, pos + SLOT_HEADER, CLUSTER_SIZE, idx * CLUSTER_SIZE);
                at.set(a, idx++);
              }
              i = j;
            }
          }
          await check('gathered');
          // write: new SCOs of up to scoClusters slots, clusters in address order
          const addrs = [...at.keys()].sort((x, y) => x - y);
          for (let i = 0; i < addrs.length; i += scoClusters) {
            const part = addrs.slice(i, i + scoClusters);
            const sco = nextSco++;
            if (sco > MAX_SCO) throw new VolumeError('INVALID', `scrub of vDisk ${id}: no SCO numbers left for scrub SCOs`, { vdisk: id });
            const out = Buffer.alloc(part.length * SLOT_SIZE);
            part.forEach((a, slot) => {
              const pos = slot * SLOT_SIZE;
              fs.readSync(fd, out, pos + SLOT_HEADER, CLUSTER_SIZE, at.get(a)! * CLUSTER_SIZE);
              encodeSlotHeader(out.subarray(pos, pos + SLOT_HEADER), tag, sco, slot, a, out.subarray(pos + SLOT_HEADER, pos + SLOT_SIZE));
              placed.set(a, pack(sco, slot));
            });
            let crc = 0;
            for (let s = 0; s < part.length; s++) crc = crc32(out.subarray(s * SLOT_SIZE, s * SLOT_SIZE + SLOT_HEADER), crc);
            await backend.put(scrubScoKey(id, scrubId, sco), out);
            stats.bytesWritten += out.length;
            progress('copying', ri, ranges.length);
            stats.newScos++;
            newScos.push([sco, part.length]);
            counts.set(sco, part.length);
            crcs.set(sco, crc >>> 0);
            await check('wrote a SCO');
          }
        } finally {
          fs.closeSync(fd);
        }
      }
      placedPer.push(placed);
    }
  } finally {
    fs.rmSync(scratch, { force: true });
  }

  // 5. the compact segments, the relocations of the live state at the horizon, the result (last)
  const segments: number[] = [];
  for (let ri = 0; ri < ranges.length; ri++) {
    progress('writing segments', ri, ranges.length);
    const r = ranges[ri];
    const records: TLogRecord[] = [{ type: RecordType.Header, vdiskId: id, tlog: r.end }, ...compactRecords(r.seg, placedPer[ri], counts, crcs)];
    const body = Buffer.concat(records.map(encodeRecord));
    await backend.put(segmentKey(id, scrubId, r.end), body);
    stats.bytesWritten += body.length;
    segments.push(r.end);
    await check('wrote a segment');
  }
  const finalOld = new Map<number, number>();
  const finalNew = new Map<number, number>();
  ranges.forEach((r, ri) => {
    for (const m of [finalOld, finalNew]) {
      if (r.seg.minSize !== null) clearFrom(m, r.seg.minSize);
    }
    for (const [a, loc] of r.seg.entries) {
      finalOld.set(a, loc);
      finalNew.set(a, placedPer[ri].get(a)!);
    }
    for (const m of [finalOld, finalNew]) {
      if (r.seg.finalSize !== null) clearFrom(m, r.seg.finalSize);
    }
  });
  const moves: number[] = [];
  for (const [a, oldLoc] of finalOld) {
    const newLoc = finalNew.get(a)!;
    if (newLoc !== oldLoc) moves.push(a, scoOfPacked(oldLoc), slotOfPacked(oldLoc), scoOfPacked(newLoc), slotOfPacked(newLoc));
  }
  const relBuf = Buffer.from(new Float64Array(moves).buffer);
  await backend.put(relocationsKey(id, scrubId), relBuf);
  // the ranges the new chain can name: earlier scrubs' SCOs still named (kept) or pinned, and this one's
  const named = new Set<number>();
  for (const p of placedPer) for (const loc of p.values()) named.add(scoOfPacked(loc));
  const scoRanges: ScoRange[] = prevRanges.filter((x) => [...named, ...pins].some((s) => s >= x.from && s <= x.to));
  if (newScos.length > 0) scoRanges.push({ from: nextFree, to: nextSco - 1, scrub: scrubId });
  stats.ms = Date.now() - t0;
  const result: ScrubResult = {
    version: 1, vdisk: id, scrubId, basis,
    state: { id: scrubId, upTo: horizon, segments, scoRanges, ranAt: now(), garbageBytes: garbageAfter },
    newScos, unnamed: oldScos.filter((sco) => !named.has(sco)), relocations: moves.length / 5, nothingToDo: false, stats,
  };
  await backend.put(resultKey(id, scrubId), Buffer.from(JSON.stringify(result)));
  progress('done', ranges.length, ranges.length);
  log.info('scrub done', { vdisk: id, scrub: scrubId, horizon, segments: segments.length, relocations: result.relocations, ...stats, throttle: opts.throttle?.stats });
  return result;
}

function clearFrom(m: Map<number, number>, size: number): void {
  const bound = Math.ceil(size / CLUSTER_SIZE);
  for (const a of m.keys()) if (a >= bound) m.delete(a);
}

/** Reads a result and its relocations back from the backend (the owner applying a remote scrub's work). */
export async function loadResult(backend: BlobStore, id: string, scrubId: string): Promise<{ result: ScrubResult; relocations: Float64Array }> {
  const result = JSON.parse((await backend.get(resultKey(id, scrubId))).toString()) as ScrubResult;
  if (result.version !== 1 || result.vdisk !== id || result.scrubId !== scrubId) {
    throw new VolumeError('INVALID', `scrub result ${scrubId} of vDisk ${id} is not one`, { vdisk: id, scrub: scrubId });
  }
  return { result, relocations: await loadRelocations(backend, result) };
}

export async function loadRelocations(backend: BlobStore, result: ScrubResult): Promise<Float64Array> {
  if (result.nothingToDo) return new Float64Array(0);
  const raw = await backend.get(relocationsKey(result.vdisk, result.scrubId));
  const rel = new Float64Array(new Uint8Array(raw).buffer, 0, raw.length / 8);
  if (rel.length !== result.relocations * 5) throw new VolumeError('CHECKSUM', `the relocations of scrub ${result.scrubId} are damaged`, { vdisk: result.vdisk });
  return rel;
}
