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
 * Thrashing (thrash-score.ts): when the cache is smaller than what a pass needs — a sequential read of a vDisk
 * overwritten at random 4 KiB clusters wants, for every MiB, one or two clusters of each of hundreds of
 * pieces — every piece is evicted before its next cluster is read, and each 4 KiB costs a 132 KiB GET. Once
 * most recent votes say whole pieces are wasted (`thrashing`), the read path fetches only the slots a request
 * needs of a piece it uses sparsely (fetchSlots: ranged GETs of just those slots, not kept) and read-ahead
 * prefetches only the pieces a stream reads mostly whole; a request that needs three quarters of a piece or
 * more still fetches it whole, and keeps it. The sparse fetches keep voting (their ghosts), so a working set
 * that fits again turns whole pieces back on.
 *
 * In place (object-fds.ts). A `file://` backend (unencrypted: BlobStore.localPath) whose object files sit on
 * the same filesystem as this cache already is a local file of every SCO: objectFd() hands the read path a
 * descriptor of the object's file, read like a write-cache SCO (by a slot reader thread, slot-readers.ts;
 * slots verified; a failure takes the careful path, getSlots, which then reads with getRange). Nothing of
 * such a backend enters the read cache.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../../backend/types.js';
import { SLOT_SIZE } from '../formats/sco-format.js';
import { withRetry } from '../../backend/retry.js';
import { logger } from '../../../util/log.js';
import type { StateDisk } from '../write-cache/write-cache-space.js';
import { ObjectFds } from './object-fds.js';
import { closeWhenIdle } from '../slot-readers/slot-readers.js';
import { sparseUse, ThrashScore } from './thrash-score.js';

export { sparseUse } from './thrash-score.js';

const log = logger('read-cache');
export const PIECE_SLOTS = 32;
/**
 * Open descriptors kept for cached pieces (least recently used closed first): about the pieces of a 512 MiB
 * cache, so that reads cycling through a whole cache do not pay an open and a close per piece (Node raises
 * its descriptor limit to the hard limit at start).
 */
const MAX_OPEN_PIECES = 4096;
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
  private readonly score: ThrashScore;
  /** The backend's objects read in place (object-fds.ts). */
  private readonly objects: ObjectFds;

  /**
   * `disk`: the state disk (write-cache-space.ts). The read cache keeps twice its reserve free: the write
   * cache and the metadata commits come first; a piece that does not fit is served without being kept.
   */
  constructor(private readonly dir: string, public limit: number, private readonly backend: BlobStore, private readonly disk?: StateDisk) {
    fs.mkdirSync(dir, { recursive: true });
    this.objects = new ObjectFds(backend, fs.statSync(dir).dev);
    this.score = new ThrashScore(() => this.capacityPieces(), () => ({
      limit: this.limit, usedBytes: this.used, hits: this.hits, misses: this.misses, sparseFetches: this.sparseFetches,
    }));
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

  /** Reads served in place from the backend's files (tests and logs look at it). */
  get inPlaceReads(): number {
    return this.objects.reads;
  }

  /** True when the backend's objects are read in place (see the header): nothing to cache or prefetch. */
  get readsInPlace(): boolean {
    return this.backend.localPath !== undefined && this.objects.lastInPlace;
  }

  /**
   * An open descriptor of the file of backend object `key` when it is read in place (object-fds.ts), else
   * undefined (not a local file, on another filesystem, missing). Valid until the next await: use it at
   * once. The caller verifies what it reads.
   */
  objectFd(key: string): number | undefined {
    return this.objects.fdOf(key);
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
        closeWhenIdle(ofd);
      }
    } else {
      this.fds.delete(name);
    }
    this.fds.set(name, fd);
    this.lru.delete(name);
    this.lru.set(name, size);
    this.hits++;
    if (this.score.unread.delete(name)) this.score.vote(0);
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
    this.score.unread.delete(name);
    const fd = this.fds.get(name);
    if (fd !== undefined) {
      this.fds.delete(name);
      closeWhenIdle(fd);
    }
    fs.rmSync(path.join(this.dir, name), { force: true });
  }

  /** Drops every piece of objects whose key starts with `prefix` (a vDisk removed). */
  invalidatePrefix(prefix: string): void {
    const p = prefix.replaceAll('/', '_');
    for (const name of [...this.lru.keys()]) if (name.startsWith(p)) this.drop(name);
    this.objects.closeAll(); // the vDisk's objects are about to go: keep none of them open
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
      this.score.addGhost(name, true);
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
        if (this.score.unread.delete(name)) this.score.vote(0);
        return Promise.resolve(buf);
      } catch {
        this.drop(name);
      }
    }
    let p = this.inflight.get(name);
    if (p === undefined) {
      this.misses++;
      this.score.noteMiss(name);
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
        this.score.addGhost(name, true);
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
        if (sparsely) this.score.unread.add(name);
        this.evict();
      }
    }
    return data;
  }

  /** Closes the descriptors kept open (the vPool is closing); the cached pieces stay for the next start. */
  close(): void {
    for (const fd of this.fds.values()) closeWhenIdle(fd);
    this.fds.clear();
    this.objects.closeAll();
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
      const wasted = this.score.unread.has(name);
      this.drop(name);
      if (!vote) continue;
      this.score.addGhost(name, true);
      if (wasted) this.score.vote(1);
    }
  }

  /**
   * True when whole pieces are being evicted before they are read again (see the header), or nothing is
   * kept at all (limit 0): a run needing a few slots of a missing piece should take fetchSlots.
   */
  get thrashing(): boolean {
    return this.limit === 0 || this.score.sparse;
  }

  /**
   * `n` slots from `slot` of the SCO at `key`, with one ranged GET of just those slots, not kept (the read
   * path when thrashing). The caller verifies them, as it does a piece's. `first`: the first of a request's
   * fetches in this piece (only that one counts as a miss of the piece: the votes are per piece).
   */
  async fetchSlots(key: string, slot: number, n: number, first = true): Promise<Buffer> {
    if (first) {
      const name = pieceName(key, Math.floor(slot / PIECE_SLOTS));
      this.score.noteMiss(name);
      this.score.addGhost(name, false);
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
