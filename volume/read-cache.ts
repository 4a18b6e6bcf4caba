/**
 * The read cache: pieces of SCOs fetched from the backend, kept as files on the local disk under
 * `<state>/rc/`, least recently used evicted first once the total passes the limit. A piece is a run of
 * up to 32 slots (132 KiB) aligned on 32, fetched with one ranged GET, so a cold sequential read costs one
 * request per 128 KiB of data. Callers verify every slot they take (sco-format.ts checkSlot); a piece that
 * fails is dropped with invalidate() and fetched again once.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BlobStore } from './backend/types.js';
import { SLOT_SIZE } from './sco-format.js';
import { withRetry } from './retry.js';
import { logger } from '../util/log.js';
import type { StateDisk } from './write-cache-space.js';

const log = logger('read-cache');
export const PIECE_SLOTS = 32;

export class ReadCache {
  /** piece file name → bytes, in LRU order (first = least recently used). */
  private readonly lru = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
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

  /** Drops a piece (it failed verification) so the next read fetches it again. */
  invalidate(key: string, slot: number): void {
    const name = pieceName(key, Math.floor(slot / PIECE_SLOTS));
    const size = this.lru.get(name);
    if (size === undefined) return;
    this.lru.delete(name);
    this.used -= size;
    fs.rmSync(path.join(this.dir, name), { force: true });
  }

  /** Drops every piece of objects whose key starts with `prefix` (a vDisk removed). */
  invalidatePrefix(prefix: string): void {
    const p = prefix.replaceAll('/', '_');
    for (const [name, size] of this.lru) {
      if (!name.startsWith(p)) continue;
      this.lru.delete(name);
      this.used -= size;
      fs.rmSync(path.join(this.dir, name), { force: true });
    }
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
    for (const [name, size] of this.lru) {
      if (avail + freed - bytes >= 2 * this.disk.reserve) break;
      this.lru.delete(name);
      this.used -= size;
      freed += size;
      fs.rmSync(path.join(this.dir, name), { force: true });
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
        this.lru.delete(name);
        this.used -= size;
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
      const tmp = path.join(this.dir, `.${name}`);
      try {
        fs.writeFileSync(tmp, data);
        fs.renameSync(tmp, path.join(this.dir, name));
        this.lru.set(name, data.length);
        this.used += data.length;
        this.evict();
      } catch (err) {
        fs.rmSync(tmp, { force: true });
        log.warn('could not keep a piece in the read cache', { key, piece, error: String(err) });
      }
    }
    return data;
  }

  /** A new limit, applied at once: pieces past it are evicted, least recently used first. */
  setLimit(bytes: number): void {
    log.info('read-cache limit changed', { from: this.limit, to: bytes, usedBytes: this.used });
    this.limit = bytes;
    this.evict();
  }

  private evict(): void {
    for (const [name, size] of this.lru) {
      if (this.used <= this.limit) break;
      this.lru.delete(name);
      this.used -= size;
      fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }
}

function pieceName(key: string, piece: number): string {
  return `${key.replaceAll('/', '_')}_${piece}`;
}
