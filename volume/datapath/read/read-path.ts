/**
 * The read path of a vDisk (issue 10): fills the caller's buffer with the bytes of a range, every slot
 * verified. VDiskImpl.readInto (../vdisk/vdisk.ts) calls readClusters(); docs/read-path.md tells the story.
 *
 * 1. Plan (synchronous): walk the cluster map over the range; holes are zero-filled at once; mapped
 *    clusters group into runs (consecutive slots of one SCO, one namespace), each classified as
 *      - local: the SCO is in the write cache of the namespace's vDisk (a clone's depth k reads its k-th
 *        ancestor's namespace and cache);
 *      - in place: the SCO's backend object is a file on the read cache's filesystem (a `file://` backend,
 *        unencrypted: ReadCache.objectFd), read like a local SCO, not copied into the read cache;
 *      - cached: a piece of the read cache holds it (runs of a backend SCO are cut at piece boundaries);
 *      - fetch: neither — one ranged GET of the piece (read-cache.ts), shared with any other reader of it;
 *        or, while the read cache is thrashing, of just the runs' slots when the request needs little of
 *        the piece (sparseUse; ReadCache.fetchSlots: whole pieces would be evicted before their other
 *        slots are read).
 * 2. The fetches start, at most FETCH_PARALLEL at a time.
 * 3. Meanwhile the local, in-place and cached runs are read: in a request of PARALLEL_MIN_RUNS runs or more,
 *    a share of them by the slot reader threads (slot-readers.ts; the backend's files first),
 *    the rest here synchronously (page-cached preads cost microseconds, less than a trip through libuv's
 *    thread pool): one readv per run, the 32-byte headers into a scratch buffer and the 4 KiB of data
 *    straight into the caller's buffer (a partial first or last cluster into a scratch cluster, then the
 *    wanted part copied); a run of one slot, one pread into scratch and a copy.
 * 4. Each slot is checked (checkSlotParts / checkSlot: magic, crc32 of header bytes 8..32 then the data,
 *    namespace, SCO, slot, address). A run that fails — or reads short, or fails to read — is read again
 *    by the old, careful path (SlotSource.fetchSlots), which mends a damaged write-cache slot from the
 *    backend copy, drops a bad read-cache piece and fetches it once more, and otherwise fails with
 *    CHECKSUM and logs it. A flipped byte is never data.
 *
 * The promise returned resolves or rejects only once every task of the request has settled, so nothing
 * writes into the caller's buffer after it has the answer.
 */
import fs from 'node:fs';
import { CLUSTER_SIZE } from '../../types.js';
import { checkSlot, checkSlotParts, SLOT_HEADER, SLOT_SIZE } from '../formats/sco-format.js';
import { PIECE_SLOTS, sparseUse, type ReadCache } from './read-cache.js';
import type { ClusterMap } from '../formats/cluster-map.js';
import { takeReaders, type SlotReader } from '../slot-readers/slot-readers.js';

/** Pieces fetched at the same time for one request. */
export const FETCH_PARALLEL = 8;
/** Slots between two runs of a piece fetched sparse below which one GET takes both (and the gap). */
const SPARSE_GAP = 2;
/** Slots in one readv: two iovecs each, and Linux takes at most 1024 (IOV_MAX). */
const MAX_RUN = 512;
/**
 * A request of this many runs read from local files uses the slot readers: many runs are many system calls.
 * A few runs stay here: a 4 KiB read of a backend file through a reader cost 33–55 µs against 11–20 here
 * (35 µs of CPU against 7), and a few long runs cost mostly crc32 and copies, which a thread waking on a
 * busy machine did not win back (docs/read-path.md, "Slot readers").
 */
const PARALLEL_MIN_RUNS = 16;
/** Slot readers one request uses at most. */
const MAX_READERS = 4;
/** Runs longer than this are cut into pieces shared between the readers and this thread. */
const SPLIT_RUN = 128;
/** What a run's system call costs, in slots read (for sharing the runs out). */
const RUN_COST = 2;

/** One namespace's slots: a vDisk, or the ancestor a clone's entry of depth k reads (VDiskImpl). */
export interface SlotSource {
  readonly id: string;
  /** The namespace tag every slot header of this vDisk carries. */
  readonly tag: number;
  /** The descriptor of SCO `sco` if it is in this vDisk's write cache, else null. Use it at once. */
  localScoFd(sco: number): number | null;
  /** The number of slots of closed SCO `sco` (to read it from the backend), undefined if unknown. */
  scoSlots(sco: number): number | undefined;
  /** The backend key of SCO `sco` (its own, or a scrub's: lineage/scrub-state.ts). */
  scoKeyOf(sco: number): string;
  /** The careful path: `n` verified slots for clusters a..a+n-1 from SCO `sco` at `slot`, or CHECKSUM. */
  fetchSlots(a: number, sco: number, slot: number, n: number): Promise<Buffer>;
}

/** What the read path needs of the vDisk being read. */
export interface ReadTarget {
  readonly map: ClusterMap;
  readonly readCache: ReadCache;
  /** The namespace of clone depth `depth` (0 = the vDisk itself); throws if that ancestor is not open. */
  source(depth: number): SlotSource;
}

/** A run of `n` clusters from `a`, stored from `slot` of SCO `sco` of `src`'s namespace. */
interface Run {
  src: SlotSource;
  a: number;
  sco: number;
  slot: number;
  n: number;
}

/** A run inside one piece of a backend SCO. */
interface PieceRun extends Run {
  key: string;
  count: number;
  piece: number;
}

// scratch for the synchronous readvs (never held across an await)
const HEADERS = Buffer.alloc(MAX_RUN * SLOT_HEADER);
const PARTIAL = [Buffer.alloc(CLUSTER_SIZE), Buffer.alloc(CLUSTER_SIZE)];
const SLOT_BUF = Buffer.alloc(SLOT_SIZE);

/**
 * Fills `out` with the bytes at `offset` (the caller has cut the range to the vDisk's size): holes with
 * zeros, mapped clusters with their verified data. `planned` is called once the fetches have started, with
 * whether the request needs anything outside the write cache (read-ahead decides on it).
 * Returns undefined when it is done already (all from the write cache or cached pieces: the common case
 * costs no promise), else a promise that settles once every task of the request has. May throw while
 * planning (an ancestor not open), before anything started.
 */
export function readClusters(t: ReadTarget, out: Buffer, offset: number, planned?: (remote: boolean) => void): Promise<void> | undefined {
  if (out.length === 0) return undefined;
  const { map, readCache } = t;
  const end = offset + out.length;
  const last = Math.floor((end - 1) / CLUSTER_SIZE);
  const files: FileRun[] = []; // local, in place and cached, in address order
  let cachedRuns = 0;
  const fetch: PieceRun[] = [];
  const self = t.source(0);

  // 1. plan
  for (let a = Math.floor(offset / CLUSTER_SIZE); a <= last;) {
    const sco = map.scoOf(a);
    if (sco === 0) {
      let b = a + 1;
      while (b <= last && map.scoOf(b) === 0) b++;
      out.fill(0, Math.max(offset, a * CLUSTER_SIZE) - offset, Math.min(end, b * CLUSTER_SIZE) - offset);
      a = b;
      continue;
    }
    const w1 = map.word1Of(a);
    let n = 1;
    while (n < MAX_RUN && a + n <= last && map.scoOf(a + n) === sco && map.word1Of(a + n) === w1 + n) n++;
    const slot = w1 & 0xffff;
    const depth = (w1 >>> 16) & 0xff; // a clone's entry from an ancestor's namespace (../lineage/clone-base.ts)
    const src = depth === 0 ? self : t.source(depth);
    if (src.localScoFd(sco) !== null) {
      files.push({ src, a, sco, slot, n, kind: LOCAL, key: '', piece: 0, pos: 0 });
    } else {
      const count = src.scoSlots(sco);
      if (count === undefined) {
        files.push({ src, a, sco, slot, n, kind: LOCAL, key: '', piece: 0, pos: 0 }); // the careful path says what is wrong (an unknown SCO)
      } else if (readCache.readsInPlace) {
        files.push({ src, a, sco, slot, n, kind: IN_PLACE, key: src.scoKeyOf(sco), piece: 0, pos: 0 });
      } else {
        const key = src.scoKeyOf(sco);
        for (let k = 0; k < n;) {
          const piece = Math.floor((slot + k) / PIECE_SLOTS);
          const m = Math.min(n - k, (piece + 1) * PIECE_SLOTS - (slot + k));
          if (readCache.isCached(key, piece)) {
            files.push({ src, a: a + k, sco, slot: slot + k, n: m, kind: CACHED, key, piece, pos: 0 });
                cachedRuns++;
          } else {
            fetch.push({ src, a: a + k, sco, slot: slot + k, n: m, key, count, piece }); // a piece being fetched is shared by fetchPiece
          }
          k += m;
        }
      }
    }
    a += n;
  }

  // 2. the fetches start
  const careful: Run[] = [];
  const fetching = fetch.length === 0 ? undefined : runPool(fetchTasks(readCache, fetch, out, offset), FETCH_PARALLEL);

  // 3. the local, in-place and cached runs: a share to the slot readers (slot-readers.ts) when the request has
  //    many runs, the rest synchronously here, meanwhile
  let handed: Promise<void> | undefined;
  try {
    planned?.(cachedRuns + fetch.length > 0);
    const readers = files.length >= PARALLEL_MIN_RUNS ? takeReaders(MAX_READERS) : NO_READERS;
    const here = readers.length === 0 ? files : handOut(readCache, files, readers, careful, (p) => (handed = p), out, offset);
    for (const r of here) {
      const fd = fileOf(readCache, r);
      if (fd === undefined || !(r.n === 1 ? readSlot(fd, r, out, offset) : readvRun(fd, r.pos, r, out, offset))) careful.push(r);
    }
  } catch (err) {
    // not expected (the reads above report through the careful path), but what started must settle first
    return settle([fetching, handed, Promise.reject(err)]);
  }
  if (fetching === undefined && handed === undefined && careful.length === 0) return undefined; // all read here
  return settle([fetching, handed, runPool(careful.map((r) => () => readCareful(r, out, offset)), FETCH_PARALLEL)]);
}

/** A run read from a local file: a write-cache SCO, a backend object in place, a read-cache piece. */
interface FileRun extends Run {
  kind: typeof LOCAL | typeof IN_PLACE | typeof CACHED;
  /** The backend object's key (in place, cached), else ''. */
  key: string;
  /** The read-cache piece (cached), else 0. */
  piece: number;
  /** Byte position of its first slot in that file (set by fileOf). */
  pos: number;
}
const NO_READERS: SlotReader[] = [];
const LOCAL = 0;
const IN_PLACE = 1;
const CACHED = 2;

/**
 * The open descriptor of run `r`'s file, with `r.pos` set; undefined when it is gone (an object not a
 * file here after all, a piece evicted since the plan): the careful path reads the run.
 */
function fileOf(readCache: ReadCache, r: FileRun): number | undefined {
  if (r.kind === LOCAL) {
    r.pos = r.slot * SLOT_SIZE;
    return r.src.localScoFd(r.sco) ?? undefined;
  }
  if (r.kind === IN_PLACE) {
    r.pos = r.slot * SLOT_SIZE;
    return readCache.objectFd(r.key);
  }
  r.pos = (r.slot - r.piece * PIECE_SLOTS) * SLOT_SIZE;
  return readCache.pieceFd(r.key, r.piece);
}

/**
 * Shares the runs between the slot readers and this thread, by cost (a run costs RUN_COST slots more than its
 * slots: its system call). The runs are ordered backend files first, write cache last, and this thread keeps
 * the last ones up to its share: the write cache's before any backend file's (a read of those may wait on
 * the disk: rather not on this thread). Runs longer than SPLIT_RUN are cut so that a long run is shared too.
 * The readers' batches start at once; `started` gets the promise that settles once their data is copied out
 * (failed runs read by the careful path). Returns the runs this thread reads itself.
 */
function handOut(readCache: ReadCache, runs: FileRun[], readers: SlotReader[], careful: Run[], started: (p: Promise<void>) => void, out: Buffer, offset: number): FileRun[] {
  let cut = runs;
  if (runs.some((r) => r.n > SPLIT_RUN)) {
    cut = [];
    for (const r of runs) {
      for (let k = 0; k < r.n; k += SPLIT_RUN) cut.push({ ...r, a: r.a + k, slot: r.slot + k, n: Math.min(SPLIT_RUN, r.n - k) });
    }
  }
  // the backend's files first, then the write cache's (this thread keeps the last ones)
  if (cut.some((r) => r.kind !== LOCAL)) cut = [...cut.filter((r) => r.kind !== LOCAL), ...cut.filter((r) => r.kind === LOCAL)];
  let total = 0;
  for (const r of cut) total += r.n + RUN_COST;
  const share = total / (readers.length + 1);
  const here: FileRun[] = [];
  let mineCost = 0;
  let split = cut.length;
  while (split > 0 && mineCost + cut[split - 1].n + RUN_COST <= share) {
    mineCost += cut[--split].n + RUN_COST;
  }
  const load = new Array<number>(readers.length).fill(0);
  const batches: Array<Array<{ r: Run; at: number }>> = readers.map(() => []);
  try {
    for (let i = 0; i < split; i++) {
      const r = cut[i];
      let best = -1;
      for (let k = 0; k < readers.length; k++) if (readers[k].room() >= r.n && (best < 0 || load[k] < load[best])) best = k;
      if (best < 0) {
        here.push(r); // every batch full: bounded, read here
        continue;
      }
      const fd = fileOf(readCache, r);
      if (fd === undefined) {
        careful.push(r);
        continue;
      }
      load[best] += r.n + RUN_COST;
      batches[best].push({ r, at: readers[best].add({ fd, pos: r.pos, n: r.n, tag: r.src.tag, sco: r.sco, slot: r.slot, a: r.a }) });
    }
  } catch (err) {
    for (const reader of readers) reader.release(); // nothing started yet: give them back
    throw err;
  }
  for (let i = split; i < cut.length; i++) here.push(cut[i]);
  const waits: Array<Promise<void>> = [];
  const failed: Run[] = [];
  readers.forEach((reader, k) => {
    const batch = batches[k];
    if (batch.length === 0) {
      reader.release();
      return;
    }
    waits.push(reader.start().then((ok) => {
      batch.forEach((b, i) => {
        if (ok[i] === 1) copySlots(reader.scratch, b.at, b.r, out, offset);
        else failed.push(b.r);
      });
    }, () => {
      for (const b of batch) failed.push(b.r); // the reader died: its runs read again here
    }).finally(() => reader.release()));
  });
  if (waits.length > 0) started(readCarefulAfter(waits, failed, out, offset));
  return here;
}

/** Once the readers' batches have settled, the careful path for the runs they found wrong (`failed`). */
async function readCarefulAfter(waits: Array<Promise<void>>, failed: Run[], out: Buffer, offset: number): Promise<void> {
  await Promise.all(waits);
  await runPool(failed.map((r) => () => readCareful(r, out, offset)), FETCH_PARALLEL);
}

/**
 * The tasks fetching the runs of missing pieces: one per piece. The piece is fetched whole (and kept)
 * unless the read cache is thrashing, the request needs little of the piece (sparseUse), and nobody is fetching
 * it already (sharing that GET costs nothing): then one ranged GET per run (runs at most SPARSE_GAP slots
 * apart share one), not kept (ReadCache.fetchSlots).
 */
function fetchTasks(readCache: ReadCache, fetch: PieceRun[], out: Buffer, offset: number): Array<() => Promise<void>> {
  const byPiece = new Map<string, PieceRun[]>();
  for (const r of fetch) {
    const name = `${r.key}#${r.piece}`;
    const runs = byPiece.get(name);
    if (runs === undefined) byPiece.set(name, [r]);
    else runs.push(r);
  }
  return [...byPiece.values()].map((runs) => async () => {
    const r0 = runs[0];
    const using = runs.reduce((sum, r) => sum + r.n, 0);
    // decided as the task starts: a request of many pieces may be the one that shows the thrashing
    if (readCache.thrashing && sparseUse(using, Math.min(PIECE_SLOTS, r0.count - r0.piece * PIECE_SLOTS)) && !readCache.hasPiece(r0.key, r0.piece)) {
      runs.sort((x, y) => x.slot - y.slot);
      for (let i = 0; i < runs.length;) {
        let j = i + 1;
        while (j < runs.length && runs[j].slot - (runs[j - 1].slot + runs[j - 1].n) <= SPARSE_GAP) j++;
        const from = runs[i].slot;
        const buf = await readCache.fetchSlots(r0.key, from, runs[j - 1].slot + runs[j - 1].n - from, i === 0);
        for (let k = i; k < j; k++) {
          const r = runs[k];
          if (!copyFromPiece(buf, (r.slot - from) * SLOT_SIZE, r, out, offset)) await readCareful(r, out, offset);
        }
        i = j;
      }
      return;
    }
    const buf = await readCache.fetchPiece(r0.key, r0.count, r0.piece, using);
    for (const r of runs) if (!copyFromPiece(buf, (r.slot - r.piece * PIECE_SLOTS) * SLOT_SIZE, r, out, offset)) await readCareful(r, out, offset);
  });
}

/** Waits for all to settle, then rejects with the first failure (4: nothing writes into `out` after the answer). */
async function settle(all: Array<Promise<void> | undefined>): Promise<void> {
  const results = await Promise.allSettled(all);
  for (const res of results) if (res.status === 'rejected') throw res.reason;
}

/** The careful path for run `r`: the slots through SlotSource.fetchSlots, then their data copied out. */
async function readCareful(r: Run, out: Buffer, offset: number): Promise<void> {
  const buf = await r.src.fetchSlots(r.a, r.sco, r.slot, r.n);
  copySlots(buf, 0, r, out, offset);
}

/**
 * Reads run `r` from `fd` at `pos` with one readv (headers to scratch, data into `out`) and verifies every
 * slot. False when anything is wrong: the caller takes the careful path, which says what.
 */
function readvRun(fd: number, pos: number, r: Run, out: Buffer, offset: number): boolean {
  const end = offset + out.length;
  const iov: Buffer[] = new Array(r.n * 2);
  let partials = 0;
  for (let k = 0; k < r.n; k++) {
    iov[k * 2] = HEADERS.subarray(k * SLOT_HEADER, (k + 1) * SLOT_HEADER);
    const c = (r.a + k) * CLUSTER_SIZE;
    iov[k * 2 + 1] = c >= offset && c + CLUSTER_SIZE <= end ? out.subarray(c - offset, c - offset + CLUSTER_SIZE) : PARTIAL[partials++];
  }
  let got: number;
  try {
    got = fs.readvSync(fd, iov, pos);
  } catch {
    return false; // the careful path reads it again and reports the error
  }
  if (got !== r.n * SLOT_SIZE) return false;
  for (let k = 0; k < r.n; k++) {
    if (checkSlotParts(HEADERS, k * SLOT_HEADER, iov[k * 2 + 1], r.src.tag, r.sco, r.slot + k, r.a + k) !== null) return false;
  }
  if (partials > 0) {
    for (let k = 0; k < r.n; k++) {
      const data = iov[k * 2 + 1];
      if (data === PARTIAL[0] || data === PARTIAL[1]) copyPart(data, 0, r.a + k, out, offset);
    }
  }
  return true;
}

/**
 * Reads the one slot of run `r` from `fd` at `r.pos` with one pread into scratch (a single buffer costs the
 * system call less than readv's two), verifies it and copies its data out. False when anything is wrong.
 */
function readSlot(fd: number, r: FileRun, out: Buffer, offset: number): boolean {
  let got: number;
  try {
    got = fs.readSync(fd, SLOT_BUF, 0, SLOT_SIZE, r.pos);
  } catch {
    return false; // the careful path reads it again and reports the error
  }
  if (got !== SLOT_SIZE || checkSlot(SLOT_BUF, 0, r.src.tag, r.sco, r.slot, r.a) !== null) return false;
  copyPart(SLOT_BUF, SLOT_HEADER, r.a, out, offset);
  return true;
}

/** Verifies run `r`'s slots in a fetched piece (from byte `pos`) and copies their data out; false if any fails. */
function copyFromPiece(piece: Buffer, pos: number, r: Run, out: Buffer, offset: number): boolean {
  for (let k = 0; k < r.n; k++) {
    if (checkSlot(piece, pos + k * SLOT_SIZE, r.src.tag, r.sco, r.slot + k, r.a + k) !== null) return false;
  }
  copySlots(piece, pos, r, out, offset);
  return true;
}

/** Copies the data of run `r`'s slots (whole slots from byte `pos` of `buf`) into `out`. */
function copySlots(buf: Buffer, pos: number, r: Run, out: Buffer, offset: number): void {
  for (let k = 0; k < r.n; k++) copyPart(buf, pos + k * SLOT_SIZE + SLOT_HEADER, r.a + k, out, offset);
}

/** Copies the part of cluster `a` (its 4 KiB at `buf[pos..]`) that lies in the range `out` holds. */
function copyPart(buf: Buffer, pos: number, a: number, out: Buffer, offset: number): void {
  const c = a * CLUSTER_SIZE;
  const from = Math.max(offset, c);
  const to = Math.min(offset + out.length, c + CLUSTER_SIZE);
  buf.copy(out, from - offset, pos + (from - c), pos + (to - c));
}

/**
 * Runs `tasks`, at most `limit` at a time. Resolves once all have settled; rejects with the first
 * failure, but only after the running ones have settled (nothing may write into the caller's buffer after
 * it has its answer), and starts no new task after a failure.
 */
async function runPool(tasks: Array<() => Promise<void>>, limit: number): Promise<void> {
  if (tasks.length === 0) return;
  let next = 0;
  let failed = false;
  let error: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < tasks.length) {
      const task = tasks[next++];
      try {
        await task();
      } catch (err) {
        if (!failed) error = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  if (failed) throw error;
}
