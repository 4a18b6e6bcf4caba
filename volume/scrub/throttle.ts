/**
 * The scrubber's manners (docs/scrubbing.md, "Limits"): a budget of backend bandwidth and operations per
 * second, and yielding to the vDisk's own I/O. The job (and the sweep after an apply) see the backend only
 * through `throttledStore`, which waits before each call until
 *
 *   1. the vDisk is quiet: no guest I/O in flight and none that ended less than `yieldMs` ago — but never
 *      more than `maxYieldMs` in a row, so that a scrub still ends under a load that never pauses;
 *   2. the budget allows it: token buckets of `bandwidthMBps` × 10⁶ bytes and `iops` operations per second,
 *      each holding at most one second's worth (the burst). An object larger than the bucket waits for a
 *      full bucket and leaves it in debt, so over any interval of t seconds the job moves at most
 *      (1 + t) × the rate plus one object. A get's size is known only once it is read: it is charged then.
 *
 * The clock is injectable (`ThrottleClock`): the tests run the budget on a clock that only moves when the
 * job sleeps, and count what it let through per interval.
 */
import type { BlobStore } from '../backend/types.js';

export interface ScrubLimits {
  /** Backend bytes read + written per second, in MB (10⁶ bytes); 0: no limit. */
  bandwidthMBps: number;
  /** Backend operations (get, put, list, head, delete) per second; 0: no limit. */
  iops: number;
  /** Back off while the vDisk has I/O in flight or had some in the last `yieldMs` ms; 0: never back off. */
  yieldMs: number;
  /** The longest the scrub backs off in a row before it makes one call anyway (ms). */
  maxYieldMs: number;
}

export const DEFAULT_SCRUB_LIMITS: ScrubLimits = { bandwidthMBps: 100, iops: 0, yieldMs: 20, maxYieldMs: 100 };

/** Checks a limits object (the config file's `scrub` key): a list of what is wrong, empty when fine. */
export function limitProblems(l: Partial<Record<keyof ScrubLimits, unknown>>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(l)) {
    if (!(k in DEFAULT_SCRUB_LIMITS)) out.push(`unknown key "${k}" (known: ${Object.keys(DEFAULT_SCRUB_LIMITS).join(', ')})`);
    else if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) out.push(`${k} must be a number ≥ 0, got ${JSON.stringify(v)}`);
  }
  return out;
}

export interface ThrottleClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const REAL_CLOCK: ThrottleClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** The vDisk's own I/O, as the throttle sees it (VDiskImpl.io, util/io-activity.ts). */
export interface IoSignal {
  /** True while I/O is in flight, or some ended less than `recentMs` ago. */
  busy(recentMs: number): boolean;
}

/** What the throttle did, for logs, the report and the tests. */
export interface ThrottleStats {
  /** Calls let through, and their bytes. */
  ops: number;
  bytes: number;
  /** Time spent waiting for the budget, and backing off for the vDisk's I/O (ms, on the throttle's clock). */
  budgetWaitMs: number;
  yieldWaitMs: number;
  /** Calls made after backing off for maxYieldMs with the vDisk still busy. */
  yieldsCut: number;
}

class Bucket {
  private tokens: number;
  private at: number;

  constructor(private readonly rate: number, now: number) {
    this.tokens = rate; // one second's worth
    this.at = now;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }

  /** How long to wait (ms) before `n` may go; 0: now. */
  waitFor(n: number, now: number): number {
    this.refill(now);
    const need = Math.min(n, this.rate);
    // whole milliseconds: a wait of 1e-14 ms would not move a clock at 256 ms (floating point) and never end
    return this.tokens >= need ? 0 : Math.ceil(((need - this.tokens) / this.rate) * 1000);
  }

  take(n: number, now: number): void {
    this.refill(now);
    this.tokens -= n;
  }
}

/** The budget and the yielding of one scrub (one job and its sweep). */
export class Throttle {
  readonly stats: ThrottleStats = { ops: 0, bytes: 0, budgetWaitMs: 0, yieldWaitMs: 0, yieldsCut: 0 };
  private readonly bw: Bucket | null;
  private readonly ops: Bucket | null;

  constructor(
    readonly limits: ScrubLimits,
    private readonly io: IoSignal | null = null,
    private readonly clock: ThrottleClock = REAL_CLOCK,
    /** Called before each call is let through (tests record the order of events). */
    private readonly onPass?: (what: string, bytes: number) => void,
  ) {
    const now = clock.now();
    this.bw = limits.bandwidthMBps > 0 ? new Bucket(limits.bandwidthMBps * 1e6, now) : null;
    this.ops = limits.iops > 0 ? new Bucket(limits.iops, now) : null;
  }

  /** Waits until a call moving `bytes` (known ahead: 0 for a get) may go, then charges it. */
  async pass(what: string, bytes: number): Promise<void> {
    await this.yieldToIo();
    for (;;) {
      const now = this.clock.now();
      const wait = Math.max(this.bw?.waitFor(bytes, now) ?? 0, this.ops?.waitFor(1, now) ?? 0);
      if (wait <= 0) break;
      this.stats.budgetWaitMs += wait;
      await this.clock.sleep(wait);
    }
    const now = this.clock.now();
    this.bw?.take(bytes, now);
    this.ops?.take(1, now);
    this.stats.ops++;
    this.stats.bytes += bytes;
    this.onPass?.(what, bytes);
  }

  /** Charges bytes learnt only after the call (a get): later calls wait them off. */
  charge(bytes: number): void {
    this.bw?.take(bytes, this.clock.now());
    this.stats.bytes += bytes;
  }

  private async yieldToIo(): Promise<void> {
    if (this.io === null || this.limits.yieldMs <= 0) return;
    const t0 = this.clock.now();
    while (this.io.busy(this.limits.yieldMs)) {
      const waited = this.clock.now() - t0;
      if (waited >= this.limits.maxYieldMs) {
        this.stats.yieldsCut++;
        break;
      }
      const step = Math.min(this.limits.yieldMs, this.limits.maxYieldMs - waited);
      this.stats.yieldWaitMs += step;
      await this.clock.sleep(step);
    }
  }
}

/** `backend` as the scrub uses it: every call waits for `throttle` first. */
export function throttledStore(backend: BlobStore, throttle: Throttle): BlobStore {
  return {
    get url() {
      return backend.url;
    },
    async put(key, data) {
      await throttle.pass(`put ${key}`, data.length);
      return backend.put(key, data);
    },
    async get(key) {
      await throttle.pass(`get ${key}`, 0);
      const b = await backend.get(key);
      throttle.charge(b.length);
      return b;
    },
    async getRange(key, offset, length) {
      await throttle.pass(`getRange ${key}`, length);
      return backend.getRange(key, offset, length);
    },
    async head(key) {
      await throttle.pass(`head ${key}`, 0);
      return backend.head(key);
    },
    async list(prefix, opts) {
      await throttle.pass(`list ${prefix}`, 0);
      return backend.list(prefix, opts);
    },
    async delete(key) {
      await throttle.pass(`delete ${key}`, 0);
      return backend.delete(key);
    },
    close: () => backend.close(),
  };
}
