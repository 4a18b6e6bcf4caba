/**
 * The read cache: pieces of SCOs fetched from the backend, kept as files on the local disk under
 * `<state>/rc/`, least recently used evicted first once the total passes the limit. A piece is a run of
 * up to 32 slots (132 KiB) aligned on 32, fetched with one ranged GET, so a cold sequential read costs one
 * request per 128 KiB of data. Callers verify every slot they take (sco-format.ts checkSlot); a piece that
 * fails is dropped with invalidate() and fetched again once.
 *
 * The read path (read-path.ts) reads only the slots it needs of a cached piece, straight from the file
 * (pieceFd: descriptors of recently used pieces stay open, at most MAX_OPEN_PIECES), and fetches missing
 * pieces itself (fetchPiece), several at a time; read-ahead (read-ahead.ts) fetches pieces before they are
 * asked for. Two callers wanting the same missing piece share one GET.
 *
 * Thrashing. Whole pieces pay off when a piece stays cached until its other slots are read. When the
 * cache is smaller than what a pass needs — a sequential read of a vDisk overwritten at random 4 KiB
 * clusters wants, for every MiB, one or two clusters of each of hundreds of pieces — every piece is evicted
 * before its next cluster is read, and each 4 KiB costs a 132 KiB GET (docs/performance.md measured 20–33×
 * the bytes). So the cache watches what whole pieces buy, in votes: a piece fetched for a request that
 * needed less than three quarters of it (sparseUse; or by read-ahead) votes once — 0 at its first hit, 1 if
 * evicted before one; the cache remembers the names of pieces recently evicted or fetched sparse (ghosts, no
 * data), and every miss on a ghost votes — 1 when caching the piece whole did not (it was evicted) or would
 * not (more pieces were missed since than the cache holds) keep it until it was wanted again, 0 when it
 * would have. Once most recent votes are 1 (`thrashing`), the read path fetches only the slots a request
 * needs of a piece it uses sparsely (fetchSlots: ranged GETs of just those slots, not kept) and read-ahead
 * prefetches only the pieces a stream reads mostly whole; a request that needs three quarters of a piece or
 * more still fetches it whole, and keeps it. The sparse fetches keep voting (their ghosts), so a working set
 * that fits again turns whole pieces back on.
 *
 * In place. A `file://` backend (unencrypted: BlobStore.localPath) whose object files sit on the same
 * filesystem as this cache already is a local file of every SCO: copying its pieces into a second local
 * file bought nothing and cost each piece a ranged GET (open, stat, read, close on libuv's pool) and a
 * cache write (open, write, close, rename, a statfs). objectFd() hands the read path a descriptor of the
 * object's file instead, read like a write-cache SCO (synchronously, slots verified; a failure takes the
 * careful path, getSlots, which then reads with getRange). Same filesystem only: its reads cost what a
 * cached piece's did; a backend directory on another (a network mount) keeps the copy-in cache.
 * Descriptors of recently read objects stay open (MAX_OBJECT_FDS); one not used for OBJECT_FD_IDLE_MS is
 * closed, so that an object deleted meanwhile (a scrub, a removed vDisk) gives back its space soon.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../backend/types.js';
import { SLOT_SIZE } from './sco-format.js';
import { withRetry } from '../backend/retry.js';
import { logger } from '../../util/log.js';
import type { StateDisk } from './write-cache-space.js';

const log = logger('read-cache');
export const PIECE_SLOTS = 32;
/**
 * Open descriptors kept for cached pieces (least recently used closed first): about the pieces of a 512 MiB
 * cache, so that reads cycling through a whole cache do not pay an open and a close per piece (Node raises
 * its descriptor limit to the hard limit at start).
 */
const MAX_OPEN_PIECES = 4096;
/** Descriptors of backend objects read in place kept open (least recently used closed first). */
const MAX_OBJECT_FDS = 64;
/** An object descriptor not used for this long is closed (by a sweep every OBJECT_FD_IDLE_MS). */
const OBJECT_FD_IDLE_MS = 2000;
/** Weight of one vote in the thrash score (an average over the last ~16 votes). */
const VOTE_WEIGHT = 1 / 16;
/** Thrashing from this score up, until it falls below LEAVE_THRASH (hysteresis: no flapping). */
const ENTER_THRASH = 0.5;
const LEAVE_THRASH = 0.25;
/**
 * Whether a read (or read-ahead) wanting `using` of a piece's `slots` uses it sparsely: while the cache
 * is thrashing such a piece is not fetched whole (a whole piece fetched for more costs at most 4/3 of what
 * is read, and is kept).
 */
export function sparseUse(using: number, slots: number): boolean {
  return using * 4 < slots * 3;
}
/** Bytes of a whole piece in the cache. */
const PIECE_BYTES = PIECE_SLOTS * SLOT_SIZE;

export class ReadCache {
  /** piece file name → bytes, in LRU order (first = least recently used). */
  private readonly lru = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** piece file name → open descriptor, in LRU order. */
  private readonly fds = new Map<string, number>();
  private used = 0;
  hits = 0;
  misses = 0;
  /** Sparse fetches (fetchSlots) so far (tests and logs look at it). */
  sparseFetches = 0;
  /**
   * Piece name → the miss count when it was evicted (or not kept) or fetched sparse, oldest first: what a
   * miss on it says about whole pieces (see the header). Names only, at most 4096 to 65536 (addGhost).
   */
  private readonly ghosts = new Map<string, { seq: number; evicted: boolean }>();
  private missSeq = 0;
  /** Cached pieces fetched for a sparse use (sparseUse, or ahead) and not read since: evicted, they vote 1. */
  private readonly unread = new Set<string>();
  /** The average of the recent votes: 1 = whole pieces were all wasted, 0 = all paid off. */
  private waste = 0;
  private sparse = false;
  /** Object key → its file's open descriptor and whether it was used since the last sweep, in LRU order (in place). */
  private readonly objectFds = new Map<string, { fd: number; file: string; used: boolean }>();
  private objectSweep: NodeJS.Timeout | null = null;
  /** The device of this cache's directory: objects on it are read in place. */
  private readonly dev: number;
  /** Whether the last object opened was on this cache's filesystem (read-ahead skips in-place objects). */
  private lastInPlace = true;
  /** Reads served in place from the backend's files (tests and logs look at it). */
  inPlaceReads = 0;

  /**
   * `disk`: the state disk (write-cache-space.ts). The read cache keeps twice its reserve free: the write
   * cache and the metadata commits come first; a piece that does not fit is served without being kept.
   */
  constructor(private readonly dir: string, public limit: number, private readonly backend: BlobStore, private readonly disk?: StateDisk) {
    fs.mkdirSync(dir, { recursive: true });
    this.dev = fs.statSync(dir).dev;
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('.')) {
        fs.rmSync(path.join(dir, name), { force: true });
        continue;
      }
      const size = fs.statSync(path.join(dir, name)).size;
      this.lru.set(name, size);
      this.used += size;
    }
  }

  get usedBytes(): number {
    return this.used;
  }

  /** True when the backend's objects are read in place (see the header): nothing to cache or prefetch. */
  get readsInPlace(): boolean {
    return this.backend.localPath !== undefined && this.lastInPlace;
  }

  /**
   * An open descriptor of the file of backend object `key` when it is read in place (see the header), else
   * undefined (not a local file, on another filesystem, missing). Valid until the next await: use it at
   * once. The caller verifies what it reads.
   */
  objectFd(key: string): number | undefined {
    if (this.backend.localPath === undefined) return undefined;
    // by key: a read after random overwrites asks for hundreds of objects per MiB, a path built each time cost more than the read
    const known = this.objectFds.get(key);
    if (known !== undefined) {
      this.objectFds.delete(key);
      this.objectFds.set(key, known);
      known.used = true;
      this.inPlaceReads++;
      return known.fd;
    }
    const file = this.backend.localPath(key);
    if (file === null) return undefined;
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return undefined; // missing: the careful path's GET says so
    }
    let st: fs.Stats;
    try {
      st = fs.fstatSync(fd);
    } catch {
      fs.closeSync(fd);
      return undefined;
    }
    this.lastInPlace = st.dev === this.dev;
    if (!this.lastInPlace || !st.isFile()) {
      fs.closeSync(fd);
      return undefined;
    }
    if (this.objectFds.size >= MAX_OBJECT_FDS) {
      const [oldest, o] = this.objectFds.entries().next().value as [string, { fd: number }];
      this.objectFds.delete(oldest);
      fs.closeSync(o.fd);
    }
    this.objectFds.set(key, { fd, file, used: true });
    this.objectSweep ??= setInterval(() => this.sweepObjects(), OBJECT_FD_IDLE_MS).unref();
    this.inPlaceReads++;
    return fd;
  }

  /**
   * Closes the object descriptors not used since the last sweep (an object deleted meanwhile frees its
   * space), and those whose key now names another file (a backend move switched to the new backend).
   */
  private sweepObjects(): void {
    for (const [key, o] of this.objectFds) {
      if (o.used && this.backend.localPath?.(key) === o.file) {
        o.used = false;
        continue;
      }
      this.objectFds.delete(key);
      fs.closeSync(o.fd);
    }
    if (this.objectFds.size === 0 && this.objectSweep !== null) {
      clearInterval(this.objectSweep);
      this.objectSweep = null;
    }
  }

  /** Closes every object descriptor (the vPool closes, a vDisk is removed). */
  private closeObjects(): void {
    for (const o of this.objectFds.values()) fs.closeSync(o.fd);
    this.objectFds.clear();
    if (this.objectSweep !== null) clearInterval(this.objectSweep);
    this.objectSweep = null;
  }

  /**
   * `n` slots from `slot` of the SCO stored at `key`, which holds `count` slots. Reads the pieces
   * covering them from the cache or the backend (in place: one ranged read of just those slots, not kept).
   */
  async getSlots(key: string, count: number, slot: number, n: number): Promise<Buffer> {
    if (this.readsInPlace && this.backend.localPath!(key) !== null) {
      return withRetry(() => this.backend.getRange(key, slot * SLOT_SIZE, n * SLOT_SIZE), {
        what: `read ${key} slots ${slot}..${slot + n - 1}`, log, attempts: 5,
      });
    }
    const out = Buffer.allocUnsafe(n * SLOT_SIZE);
    let done = 0;
    while (done < n) {
      const s = slot + done;
      const piece = Math.floor(s / PIECE_SLOTS);
      const pieceStart = piece * PIECE_SLOTS;
      const want = Math.min(PIECE_SLOTS, count - pieceStart);
      let data = await this.piece(key, piece, want);
      if (data.length !== want * SLOT_SIZE) {
        // a piece cut short (a host crash after its rename): drop it and fetch it again
        log.warn('a read-cache piece has the wrong length; fetching it again', { key, piece, bytes: data.length, want: want * SLOT_SIZE });
        this.invalidate(key, pieceStart);
        data = await this.piece(key, piece, want);
      }
      const take = Math.min(n - done, pieceStart + PIECE_SLOTS - s);
      const from = (s - pieceStart) * SLOT_SIZE;
      if (data.length < from + take * SLOT_SIZE) throw new Error(`read cache: piece ${key}#${piece} is short`);
      data.copy(out, done * SLOT_SIZE, from, from + take * SLOT_SIZE);
      done += take;
    }
    return out;
  }

  /**
   * An open descriptor of piece `piece` of `key` if it is cached (a hit: it becomes the most recently
   * used), else undefined. Valid until the piece is evicted or invalidated: use it at once, never across an
   * await. The caller verifies what it reads (a piece cut short reads short).
   */
  pieceFd(key: string, piece: number): number | undefined {
    const name = pieceName(key, piece);
    const size = this.lru.get(name);
    if (size === undefined) return undefined;
    let fd = this.fds.get(name);
    if (fd === undefined) {
      try {
        fd = fs.openSync(path.join(this.dir, name), 'r');
      } catch {
        this.drop(name);
        return undefined;
      }
      if (this.fds.size >= MAX_OPEN_PIECES) {
        const [oldest, ofd] = this.fds.entries().next().value as [string, number];
        this.fds.delete(oldest);
        fs.closeSync(ofd);
      }
    } else {
      this.fds.delete(name);
    }
    this.fds.set(name, fd);
    this.lru.delete(name);
    this.lru.set(name, size);
    this.hits++;
    if (this.unread.delete(name)) this.vote(0);
    return fd;
  }

  /** True when piece `piece` of `key` is in the cache (its file written). */
  isCached(key: string, piece: number): boolean {
    return this.lru.has(pieceName(key, piece));
  }

  /** True when piece `piece` of `key` is cached or being fetched. */
  hasPiece(key: string, piece: number): boolean {
    const name = pieceName(key, piece);
    return this.lru.has(name) || this.inflight.has(name);
  }

  /**
   * The bytes of piece `piece` of the SCO at `key` (which holds `count` slots): from the cache, else one GET
   * (kept). `using`: how many of its slots the caller reads (0: read-ahead), for the thrash votes.
   */
  fetchPiece(key: string, count: number, piece: number, using = 0): Promise<Buffer> {
    return this.piece(key, piece, Math.min(PIECE_SLOTS, count - piece * PIECE_SLOTS), using);
  }

  /** Drops a piece (it failed verification) so the next read fetches it again. */
  invalidate(key: string, slot: number): void {
    this.drop(pieceName(key, Math.floor(slot / PIECE_SLOTS)));
  }

  /** Removes a cached piece: its bytes, its open descriptor, its file. */
  private drop(name: string): void {
    const size = this.lru.get(name);
    if (size === undefined) return;
    this.lru.delete(name);
    this.used -= size;
    this.unread.delete(name);
    const fd = this.fds.get(name);
    if (fd !== undefined) {
      this.fds.delete(name);
      fs.closeSync(fd);
    }
    fs.rmSync(path.join(this.dir, name), { force: true });
  }

  /** Drops every piece of objects whose key starts with `prefix` (a vDisk removed). */
  invalidatePrefix(prefix: string): void {
    const p = prefix.replaceAll('/', '_');
    for (const name of [...this.lru.keys()]) if (name.startsWith(p)) this.drop(name);
    this.closeObjects(); // the vDisk's objects are about to go: keep none of them open
  }

  /** Whether `bytes` more leave twice the state disk's reserve free (evicting own pieces to make room). */
  private roomOnDisk(bytes: number): boolean {
    if (this.disk === undefined) return true;
    let avail: number;
    try {
      avail = this.disk.available();
    } catch {
      return true;
    }
    let freed = 0;
    for (const [name, size] of [...this.lru]) {
      if (avail + freed - bytes >= 2 * this.disk.reserve) break;
      this.drop(name);
      this.addGhost(name, true);
      freed += size;
    }
    return avail + freed - bytes >= 2 * this.disk.reserve;
  }

  private piece(key: string, piece: number, slots: number, using = slots): Promise<Buffer> {
    const name = pieceName(key, piece);
    const size = this.lru.get(name);
    if (size !== undefined) {
      try {
        const buf = fs.readFileSync(path.join(this.dir, name));
        this.lru.delete(name);
        this.lru.set(name, size);
        this.hits++;
        if (this.unread.delete(name)) this.vote(0);
        return Promise.resolve(buf);
      } catch {
        this.drop(name);
      }
    }
    let p = this.inflight.get(name);
    if (p === undefined) {
      this.misses++;
      this.noteMiss(name);
      p = this.fetch(key, piece, slots, name, sparseUse(using, slots)).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private async fetch(key: string, piece: number, slots: number, name: string, sparsely: boolean): Promise<Buffer> {
    const data = await withRetry(() => this.backend.getRange(key, piece * PIECE_SLOTS * SLOT_SIZE, slots * SLOT_SIZE), {
      what: `read ${key} piece ${piece}`, log, attempts: 5,
    });
    if (this.limit > 0 && this.roomOnDisk(data.length)) {
      // Written off the event loop (creating a file can take milliseconds on a busy disk) before the piece
      // is handed out: whoever wants it meanwhile shares this fetch (inflight), and once a read returns,
      // the pieces it fetched are in the cache. Its room is taken first, so that the files (finished or
      // not) never pass the limit; with no room left (the limit is smaller than what is being fetched)
      // it is not kept.
      this.used += data.length;
      this.evict();
      if (this.used > this.limit) {
        this.used -= data.length;
        this.addGhost(name, true);
        return data;
      }
      const tmp = path.join(this.dir, `.${name}`);
      try {
        await fs.promises.writeFile(tmp, data);
        await fs.promises.rename(tmp, path.join(this.dir, name));
      } catch (err) {
        this.used -= data.length;
        fs.rmSync(tmp, { force: true });
        log.warn('could not keep a piece in the read cache', { key, piece, error: String(err) });
        return data;
      }
      if (this.limit === 0) {
        // emptied meanwhile (setLimit)
        this.used -= data.length;
        fs.rmSync(path.join(this.dir, name), { force: true });
      } else {
        this.lru.set(name, data.length);
        if (sparsely) this.unread.add(name);
        this.evict();
      }
    }
    return data;
  }

  /** Closes the descriptors kept open (the vPool is closing); the cached pieces stay for the next start. */
  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.closeObjects();
  }

  /** A new limit, applied at once: pieces past it are evicted, least recently used first. */
  setLimit(bytes: number): void {
    log.info('read-cache limit changed', { from: this.limit, to: bytes, usedBytes: this.used });
    this.limit = bytes;
    this.evict(false);
  }

  /** Evicts down to the limit; `vote`: false when the limit was lowered (no news about the workload). */
  private evict(vote = true): void {
    for (const name of this.lru.keys()) {
      if (this.used <= this.limit) break;
      const wasted = this.unread.has(name);
      this.drop(name);
      if (!vote) continue;
      this.addGhost(name, true);
      if (wasted) this.vote(1);
    }
  }

  /**
   * True when whole pieces are being evicted before they are read again (see the header), or nothing is
   * kept at all (limit 0): a run needing a few slots of a missing piece should take fetchSlots.
   */
  get thrashing(): boolean {
    return this.limit === 0 || this.sparse;
  }

  /**
   * `n` slots from `slot` of the SCO at `key`, with one ranged GET of just those slots, not kept (the read
   * path when thrashing). The caller verifies them, as it does a piece's. `first`: the first of a request's
   * fetches in this piece (only that one counts as a miss of the piece: the votes are per piece).
   */
  async fetchSlots(key: string, slot: number, n: number, first = true): Promise<Buffer> {
    if (first) {
      const name = pieceName(key, Math.floor(slot / PIECE_SLOTS));
      this.noteMiss(name);
      this.addGhost(name, false);
    }
    this.sparseFetches++;
    return withRetry(() => this.backend.getRange(key, slot * SLOT_SIZE, n * SLOT_SIZE), {
      what: `read ${key} slots ${slot}..${slot + n - 1}`, log, attempts: 5,
    });
  }

  /** Pieces the cache holds at its limit. */
  private capacityPieces(): number {
    return Math.max(1, Math.floor(this.limit / PIECE_BYTES));
  }

  /** A miss on piece `name` (about to be fetched, whole or sparse): votes if it is a ghost. */
  private noteMiss(name: string): void {
    this.missSeq++;
    const g = this.ghosts.get(name);
    if (g === undefined) return; // never seen (or long ago): says nothing about the cache
    this.ghosts.delete(name);
    this.vote(g.evicted || this.missSeq - g.seq > this.capacityPieces() ? 1 : 0);
  }

  private addGhost(name: string, evicted: boolean): void {
    this.ghosts.delete(name);
    this.ghosts.set(name, { seq: this.missSeq, evicted });
    const max = Math.min(65536, Math.max(4096, 4 * this.capacityPieces()));
    for (const oldest of this.ghosts.keys()) {
      if (this.ghosts.size <= max) break;
      this.ghosts.delete(oldest);
    }
  }

  private vote(v: 0 | 1): void {
    this.waste += (v - this.waste) * VOTE_WEIGHT;
    if (!this.sparse && this.waste > ENTER_THRASH) {
      this.sparse = true;
      log.info('read cache thrashing: pieces are evicted before they are read again; fetching only the slots sparse reads need', {
        limit: this.limit, usedBytes: this.used, hits: this.hits, misses: this.misses,
      });
    } else if (this.sparse && this.waste < LEAVE_THRASH) {
      this.sparse = false;
      log.info('read cache no longer thrashing: fetching whole pieces again', { limit: this.limit, sparseFetches: this.sparseFetches });
    }
  }
}

/** Object keys with `/` replaced, remembered (a read asks for the same SCO's pieces over and over). */
const flatKeys = new Map<string, string>();

function pieceName(key: string, piece: number): string {
  let flat = flatKeys.get(key);
  if (flat === undefined) {
    if (flatKeys.size >= 8192) flatKeys.clear();
    flat = key.replaceAll('/', '_');
    flatKeys.set(key, flat);
  }
  return `${flat}_${piece}`;
}
