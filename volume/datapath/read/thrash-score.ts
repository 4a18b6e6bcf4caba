/**
 * Whether the read cache thrashes (read-cache.ts, "Thrashing"; docs/read-path.md, "When the read cache
 * thrashes"): whole pieces pay off when a piece stays cached until its other slots are read. The score counts
 * what whole pieces buy, in votes: a piece fetched for a request that needed less than three quarters of it
 * (sparseUse; or by read-ahead) votes once — 0 at its first hit, 1 if evicted before one; the names of
 * pieces recently evicted or fetched sparse are remembered (ghosts, no data), and every miss on a ghost votes
 * — 1 when caching the piece whole did not (it was evicted) or would not (more pieces were missed since than
 * the cache holds) keep it until it was wanted again, 0 when it would have. Thrashing from an average of
 * ENTER_THRASH up, until it falls below LEAVE_THRASH (hysteresis: no flapping).
 */
import { logger } from '../../../util/log.js';

const log = logger('read-cache');
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

export class ThrashScore {
  /**
   * Piece name → the miss count when it was evicted (or not kept) or fetched sparse, oldest first: what a
   * miss on it says about whole pieces. Names only, at most 4096 to 65536 (addGhost).
   */
  private readonly ghosts = new Map<string, { seq: number; evicted: boolean }>();
  private missSeq = 0;
  /** Cached pieces fetched for a sparse use (sparseUse, or ahead) and not read since: evicted, they vote 1. */
  readonly unread = new Set<string>();
  /** The average of the recent votes: 1 = whole pieces were all wasted, 0 = all paid off. */
  private waste = 0;
  /** Whether the cache is thrashing now. */
  sparse = false;

  /** `capacityPieces`: how many pieces the cache holds at its limit now; `state`: for the logs. */
  constructor(private readonly capacityPieces: () => number, private readonly state: () => Record<string, number>) {}

  /** A miss on piece `name` (about to be fetched, whole or sparse): votes if it is a ghost. */
  noteMiss(name: string): void {
    this.missSeq++;
    const g = this.ghosts.get(name);
    if (g === undefined) return; // never seen (or long ago): says nothing about the cache
    this.ghosts.delete(name);
    this.vote(g.evicted || this.missSeq - g.seq > this.capacityPieces() ? 1 : 0);
  }

  /** Piece `name` left the cache (`evicted`) or was fetched sparse / not kept: remembered by name. */
  addGhost(name: string, evicted: boolean): void {
    this.ghosts.delete(name);
    this.ghosts.set(name, { seq: this.missSeq, evicted });
    const max = Math.min(65536, Math.max(4096, 4 * this.capacityPieces()));
    for (const oldest of this.ghosts.keys()) {
      if (this.ghosts.size <= max) break;
      this.ghosts.delete(oldest);
    }
  }

  vote(v: 0 | 1): void {
    this.waste += (v - this.waste) * VOTE_WEIGHT;
    if (!this.sparse && this.waste > ENTER_THRASH) {
      this.sparse = true;
      log.info('read cache thrashing: pieces are evicted before they are read again; fetching only the slots sparse reads need', this.state());
    } else if (this.sparse && this.waste < LEAVE_THRASH) {
      this.sparse = false;
      log.info('read cache no longer thrashing: fetching whole pieces again', this.state());
    }
  }
}
