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

export class ReadCache {
  /** piece file name → bytes, in LRU order (first = least recently used). */
  private readonly lru = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** piece file name → open descriptor, in LRU order. */
  private readonly fds = new Map<string, number>();
  private used = 0;
  hits = 0;
  misses = 0;

  /**
   * `disk`: the state disk (write-cache-space.ts). The read cache keeps twice its reserve free: the write
   * cache and the metadata commits come first; a piece that does not fit is served without being kept.
   */
  constructor(private readonly dir: string, public limit: number, private readonly backend: BlobStore, private readonly disk?: StateDisk) {
    fs.mkdirSync(dir, { recursive: true });
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

  /**
   * `n` slots from `slot` of the SCO stored at `key`, which holds `count` slots. Reads the pieces
   * covering them from the cache or the backend.
   */
  async getSlots(key: string, count: number, slot: number, n: number): Promise<Buffer> {
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

  /** The bytes of piece `piece` of the SCO at `key` (which holds `count` slots): from the cache, else one GET (kept). */
  fetchPiece(key: string, count: number, piece: number): Promise<Buffer> {
    return this.piece(key, piece, Math.min(PIECE_SLOTS, count - piece * PIECE_SLOTS));
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
      freed += size;
    }
    return avail + freed - bytes >= 2 * this.disk.reserve;
  }

  private piece(key: string, piece: number, slots: number): Promise<Buffer> {
    const name = pieceName(key, piece);
    const size = this.lru.get(name);
    if (size !== undefined) {
      try {
        const buf = fs.readFileSync(path.join(this.dir, name));
        this.lru.delete(name);
        this.lru.set(name, size);
        this.hits++;
        return Promise.resolve(buf);
      } catch {
        this.drop(name);
      }
    }
    let p = this.inflight.get(name);
    if (p === undefined) {
      this.misses++;
      p = this.fetch(key, piece, slots, name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private async fetch(key: string, piece: number, slots: number, name: string): Promise<Buffer> {
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
        this.evict();
      }
    }
    return data;
  }

  /** Closes the descriptors kept open (the vPool is closing); the cached pieces stay for the next start. */
  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  /** A new limit, applied at once: pieces past it are evicted, least recently used first. */
  setLimit(bytes: number): void {
    log.info('read-cache limit changed', { from: this.limit, to: bytes, usedBytes: this.used });
    this.limit = bytes;
    this.evict();
  }

  private evict(): void {
    for (const name of this.lru.keys()) {
      if (this.used <= this.limit) break;
      this.drop(name);
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
