/**
 * Read-ahead of one vDisk: when reads come sequentially and need the backend, the read-cache pieces of the
 * range just ahead are fetched in the background, so a cold sequential read does not wait one GET at a
 * time.
 *
 * - Sequential: a read starting within SLACK of where the previous one ended (FUSE may have a few
 *   requests in flight, slightly out of order). Anything else resets the stream.
 * - Ahead of a sequential read that needed pieces not in the write cache, the cluster map of the next
 *   `window` bytes (1 MiB, doubling up to 16 MiB, at most an eighth of the read cache) is walked and every
 *   piece of a backend SCO that is neither cached nor being fetched is queued — at most MAX_QUEUED
 *   pieces (~8 MiB), PARALLEL fetched at a time.
 * - While the read cache is thrashing (read-cache.ts), only pieces the window reads mostly whole are
 *   queued (sparseUse): a piece wanted for a cluster or two would be evicted before the stream comes back to it.
 * - It only warms the read cache. Every read still plans from the cluster map as it is when the read
 *   runs, and pieces are of SCOs, which never change: an overwrite after a prefetch is read from its new
 *   SCO, never from the prefetched piece.
 * - No read waits for a prefetch it does not need: a read wanting a piece being prefetched shares that
 *   GET (read-cache.ts), any other piece it fetches itself. A failed prefetch is only logged (debug);
 *   the read that needs the piece fetches it and reports.
 */
import { logger } from '../../../util/log.js';
import { CLUSTER_SIZE } from '../../types.js';
import { PIECE_SLOTS, sparseUse } from './read-cache.js';
import type { ReadTarget } from './read-path.js';

const log = logger('read-ahead');
const MiB = 2 ** 20;
const SLACK = 2 * MiB;
const MIN_WINDOW = MiB;
const MAX_WINDOW = 16 * MiB;
const MAX_QUEUED = 64;
const PARALLEL = 4;

export interface ReadAheadTarget extends ReadTarget {
  readonly size: number;
  /** False once the vDisk is closed or removed: nothing more is fetched for it. */
  readonly readable: boolean;
}

export class ReadAhead {
  /** Where the stream's last read ended (-1: no stream). */
  private streamEnd = -1;
  /** Bytes up to which the range ahead has been walked. */
  private planned = 0;
  private window = MIN_WINDOW;
  private readonly queue: Array<{ key: string; count: number; piece: number }> = [];
  private readonly queued = new Set<string>();
  private active = 0;
  private idleWaiters: Array<() => void> = [];
  /** Pieces fetched by read-ahead (tests look at it). */
  fetched = 0;

  constructor(private readonly t: ReadAheadTarget) {}

  /** A read of [offset, end) was planned; `remote`: it needed pieces from the read cache or the backend. */
  note(offset: number, end: number, remote: boolean): void {
    const sequential = this.streamEnd >= 0 && offset >= this.streamEnd - SLACK && offset <= this.streamEnd + SLACK;
    if (!sequential) {
      this.streamEnd = end;
      this.planned = end;
      this.window = MIN_WINDOW;
      return;
    }
    this.streamEnd = Math.max(this.streamEnd, end);
    // in place (read-cache.ts): nothing to prefetch, the kernel's read-ahead of the object file does it
    if (!remote || this.t.readCache.limit === 0 || this.t.readCache.readsInPlace) return;
    const target = Math.min(this.t.size, this.streamEnd + Math.min(this.window, Math.floor(this.t.readCache.limit / 8)));
    this.window = Math.min(MAX_WINDOW, this.window * 2);
    try {
      this.plan(Math.max(this.planned, this.streamEnd), target);
      this.pump();
    } catch (err) {
      // never the read's failure: it has what it needs planned already
      log.warn('read-ahead could not plan the range ahead', { from: this.planned, to: target, error: String(err) });
    }
  }

  /** Resolves once nothing is queued or being fetched (tests: the state after the prefetches, not a time). */
  idle(): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Queues the missing pieces of the clusters of [from, to) (while the cache is thrashing, those the range
   * reads mostly whole: sparseUse); stops when the queue would be full.
   */
  private plan(from: number, to: number): void {
    const { map, readCache } = this.t;
    const thrashing = readCache.thrashing;
    let a = Math.floor(from / CLUSTER_SIZE);
    const last = Math.ceil(to / CLUSTER_SIZE);
    let prevSco = 0;
    let prevPiece = -1; // (with the depth) the piece of the cluster before: sequential data is 32 clusters a piece
    const found = new Map<string, { key: string; count: number; piece: number; clusters: number }>();
    let cur: { clusters: number } | undefined; // the missing piece the cluster before is in
    for (; a < last && this.queue.length + found.size < MAX_QUEUED; a++) {
      const sco = map.scoOf(a);
      if (sco === 0) continue;
      const w1 = map.word1Of(a);
      const pieceAndDepth = Math.floor((w1 & 0xffff) / PIECE_SLOTS) + (w1 >>> 16) * 0x10000;
      if (sco === prevSco && pieceAndDepth === prevPiece) {
        if (cur !== undefined) cur.clusters++;
        continue;
      }
      prevSco = sco;
      prevPiece = pieceAndDepth;
      cur = undefined;
      let src;
      try {
        src = this.t.source((w1 >>> 16) & 0xff);
      } catch {
        continue; // an ancestor not open: the read will say so
      }
      if (src.localScoFd(sco) !== null) continue;
      const count = src.scoSlots(sco);
      if (count === undefined) continue;
      const key = src.scoKeyOf(sco);
      const piece = Math.floor((w1 & 0xffff) / PIECE_SLOTS);
      const name = `${key}#${piece}`;
      if (this.queued.has(name) || readCache.hasPiece(key, piece)) continue;
      let f = found.get(name);
      if (f === undefined) {
        f = { key, count, piece, clusters: 0 };
        found.set(name, f);
      }
      f.clusters++;
      cur = f;
    }
    for (const [name, f] of found) {
      if (thrashing && sparseUse(f.clusters, Math.min(PIECE_SLOTS, f.count - f.piece * PIECE_SLOTS))) continue;
      this.queued.add(name);
      this.queue.push({ key: f.key, count: f.count, piece: f.piece });
    }
    this.planned = Math.max(this.planned, a * CLUSTER_SIZE);
  }

  private pump(): void {
    while (this.active < PARALLEL && this.queue.length > 0) {
      const p = this.queue.shift()!;
      this.queued.delete(`${p.key}#${p.piece}`);
      if (!this.t.readable) {
        this.queue.length = 0;
        this.queued.clear();
        break;
      }
      if (this.t.readCache.hasPiece(p.key, p.piece)) continue;
      this.active++;
      this.fetched++;
      this.t.readCache.fetchPiece(p.key, p.count, p.piece)
        .catch((err: unknown) => log.debug('read-ahead of a piece failed (the read that needs it fetches it again)', { key: p.key, piece: p.piece, error: String(err) }))
        .finally(() => {
          this.active--;
          this.pump();
        });
    }
    if (this.active === 0 && this.queue.length === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of w) resolve();
    }
  }
}
