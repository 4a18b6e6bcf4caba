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
 * 3. Meanwhile the local and cached runs are read synchronously (page-cached preads cost microseconds, less
 *    than a trip through libuv's thread pool): one readv per run, the 32-byte headers into a scratch
 *    buffer and the 4 KiB of data straight into the caller's buffer (a partial first or last cluster into
 *    a scratch cluster, then the wanted part copied).
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
import { CLUSTER_SIZE } from '../types.js';
import { checkSlot, checkSlotParts, SLOT_HEADER, SLOT_SIZE } from './sco-format.js';
import { PIECE_SLOTS, sparseUse, type ReadCache } from './read-cache.js';
import type { ClusterMap } from './cluster-map.js';

/** Pieces fetched at the same time for one request. */
export const FETCH_PARALLEL = 8;
/** Slots between two runs of a piece fetched sparse below which one GET takes both (and the gap). */
const SPARSE_GAP = 2;
/** Slots in one readv: two iovecs each, and Linux takes at most 1024 (IOV_MAX). */
const MAX_RUN = 512;

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
  const local: Run[] = [];
  const inPlace: Array<Run & { key: string }> = [];
  const cached: PieceRun[] = [];
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
      local.push({ src, a, sco, slot, n });
    } else {
      const count = src.scoSlots(sco);
      if (count === undefined) {
        local.push({ src, a, sco, slot, n }); // the careful path says what is wrong (an unknown SCO)
      } else if (readCache.readsInPlace) {
        inPlace.push({ src, a, sco, slot, n, key: src.scoKeyOf(sco) });
      } else {
        const key = src.scoKeyOf(sco);
        for (let k = 0; k < n;) {
          const piece = Math.floor((slot + k) / PIECE_SLOTS);
          const m = Math.min(n - k, (piece + 1) * PIECE_SLOTS - (slot + k));
          const r: PieceRun = { src, a: a + k, sco, slot: slot + k, n: m, key, count, piece };
          (readCache.isCached(key, piece) ? cached : fetch).push(r); // a piece being fetched is shared by fetchPiece
          k += m;
        }
      }
    }
    a += n;
  }

  // 2. the fetches start
  const careful: Run[] = [];
  const fetching = fetch.length === 0 ? undefined : runPool(fetchTasks(readCache, fetch, out, offset), FETCH_PARALLEL);

  // 3. the local and cached runs, synchronously, meanwhile
  try {
    planned?.(cached.length + fetch.length > 0);
    for (const r of local) {
      const fd = r.src.localScoFd(r.sco);
      if (fd === null || !readvRun(fd, r.slot * SLOT_SIZE, r, out, offset)) careful.push(r);
    }
    for (const r of inPlace) {
      const fd = readCache.objectFd(r.key); // undefined: not a file here after all (the careful path reads it)
      if (fd === undefined || !readvRun(fd, r.slot * SLOT_SIZE, r, out, offset)) careful.push(r);
    }
    for (const r of cached) {
      const fd = readCache.pieceFd(r.key, r.piece); // undefined: evicted since the plan (the careful path fetches it)
      if (fd === undefined || !readvRun(fd, (r.slot - r.piece * PIECE_SLOTS) * SLOT_SIZE, r, out, offset)) careful.push(r);
    }
  } catch (err) {
    // not expected (the reads above report through the careful path), but the fetches must settle first
    return settle(fetching, Promise.reject(err));
  }
  if (fetching === undefined && careful.length === 0) return undefined; // all from the write cache or the read cache
  return settle(fetching, runPool(careful.map((r) => () => readCareful(r, out, offset)), FETCH_PARALLEL));
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

/** Waits for both to settle, then rejects with the first failure (4: nothing writes into `out` after the answer). */
async function settle(a: Promise<void> | undefined, b: Promise<void>): Promise<void> {
  const results = await Promise.allSettled([a, b]);
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
