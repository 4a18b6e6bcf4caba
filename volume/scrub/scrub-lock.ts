/**
 * The per-vDisk scrub lock in the backend (docs/scrubbing.md, "One scrub of a vDisk at a time"): a lease
 * that every scrubber of a vDisk takes first — the owner's `vpoolfs scrub` and `vpoolfs scrub --backend` on
 * any host alike — so two of them never do the same work. Safety does not rest on it (a scrub writes only
 * keys of its own scrub id and the owner applies at most one result): a lost lease costs work, not data.
 *
 * Layout: `vdisks/<id>/scrub-lock/<generation>` (16 digits, so text order is generation order), JSON
 * `{holder, host, pid, takenAt, expiresAt, released?}`. The newest generation is the lock:
 * - take: read the newest; held (not released, not expired) → BUSY naming its holder. Otherwise create the
 *   next generation with createExclusive: of two takers racing for one expired lease exactly one creates
 *   it (file:// link(2), S3 If-None-Match), the other is told who won. The taker then deletes the older
 *   generations (never the newest: a deleted newest would let the numbering restart under a taker that
 *   still counts from it).
 * - renew: the holder puts its own generation again with a later expiry every lease/3, then lists: a newer
 *   generation means the lease had expired and someone took it (the holder was stopped, or its clock is
 *   late); the lock is then lost and `check()` throws, so the job stops at its next step.
 * - release: the holder puts its generation with `released: true` (it is not deleted, for the reason above).
 * A holder killed with -9 renews no more: its lease may be taken once `expiresAt` is past, or at once by a
 * process of the same host that finds the holder's pid gone (a restarted owner). Expiry compares
 * the holder's clock with the taker's: hosts' clocks must agree to well within a lease (NTP), as for the claim.
 */
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { isCode, VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';

const log = logger('scrub');

/** The default lease: a holder that stops renewing is overtaken this long after its last renewal. */
export const DEFAULT_SCRUB_LEASE_MS = 60_000;

export const scrubLockPrefix = (id: string): string => `vdisks/${id}/scrub-lock/`;
const lockKey = (id: string, gen: number): string => `${scrubLockPrefix(id)}${String(gen).padStart(16, '0')}`;

export interface ScrubLockRecord {
  /** Who scrubs: `owner <router>` or `vpoolfs scrub --backend`. */
  holder: string;
  host: string;
  pid: number;
  /** Tells this holder's record apart from any other with the same host and pid. */
  token: string;
  takenAt: number;
  expiresAt: number;
  released?: boolean;
}

export interface ScrubLockOptions {
  holder: string;
  /** Lease length (ms); default DEFAULT_SCRUB_LEASE_MS. */
  leaseMs?: number;
  now?: () => number;
}

/** "scrubbed by HOLDER on HOST (pid P) until T": what a refusal says. */
export function describeHolder(r: ScrubLockRecord): string {
  return `${r.holder} on ${r.host} (pid ${r.pid}), lease until ${new Date(r.expiresAt).toISOString()}`;
}

/** The newest generation's key and record, or null when the vDisk was never locked. */
async function newest(store: BlobStore, id: string): Promise<{ gen: number; key: string; rec: ScrubLockRecord | null; older: string[] } | null> {
  for (let attempt = 0; ; attempt++) {
    const keys = (await store.list(scrubLockPrefix(id))).filter((k) => /\/\d{16}$/.test(k));
    if (keys.length === 0) return null;
    const key = keys[keys.length - 1];
    try {
      const rec = JSON.parse((await store.get(key)).toString('utf8')) as ScrubLockRecord;
      return { gen: Number(key.slice(key.lastIndexOf('/') + 1)), key, rec, older: keys.slice(0, -1) };
    } catch (err) {
      // gone between list and get (the previous holder's cleanup of an older generation raced us): list again
      if (isCode(err, 'NOT_FOUND') && attempt < 5) continue;
      if (err instanceof SyntaxError) return { gen: Number(key.slice(key.lastIndexOf('/') + 1)), key, rec: null, older: keys.slice(0, -1) };
      throw err;
    }
  }
}

/** Who holds the scrub lock of vDisk `id` now, or null (free, released or expired). */
export async function scrubLockHolder(store: BlobStore, id: string, now = Date.now()): Promise<ScrubLockRecord | null> {
  const n = await newest(store, id);
  if (n === null || n.rec === null || n.rec.released === true || n.rec.expiresAt <= now) return null;
  return n.rec;
}

/**
 * True when the holder was a process of this host that no longer exists (a daemon restarted after a kill -9
 * need not wait out its own lease). A reused pid looks alive: then the lease is waited out, the safe side.
 * Hosts are told apart by hostname; two hosts with one name could take each other's lease early, which
 * costs duplicate work, never data (see the header).
 */
function deadHere(rec: ScrubLockRecord): boolean {
  if (rec.host !== os.hostname() || rec.pid === process.pid) return false;
  try {
    process.kill(rec.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function busy(id: string, rec: ScrubLockRecord): VolumeError {
  return new VolumeError('BUSY', `vDisk ${id} is being scrubbed by ${describeHolder(rec)}: only one scrub of a vDisk at a time`, { vdisk: id, holder: rec, scrubLock: true });
}

export class ScrubLock {
  private timer: NodeJS.Timeout | undefined;
  private lostTo: ScrubLockRecord | null = null;
  private renewing: Promise<void> = Promise.resolve();
  private done = false;

  private constructor(
    private readonly store: BlobStore,
    readonly vdisk: string,
    private readonly key: string,
    private rec: ScrubLockRecord,
    private readonly leaseMs: number,
    private readonly now: () => number,
  ) {}

  /** Takes the lock of vDisk `id` or throws BUSY naming the holder. Renewed in the background until release. */
  static async take(store: BlobStore, id: string, opts: ScrubLockOptions): Promise<ScrubLock> {
    const now = opts.now ?? Date.now;
    const leaseMs = opts.leaseMs ?? DEFAULT_SCRUB_LEASE_MS;
    if (!(leaseMs > 0)) throw new VolumeError('INVALID', `the scrub lock's lease must be > 0 ms, got ${leaseMs}`, { leaseMs });
    const cur = await newest(store, id);
    if (cur !== null && cur.rec !== null && cur.rec.released !== true) {
      if (cur.rec.expiresAt > now() && !deadHere(cur.rec)) throw busy(id, cur.rec);
      log.warn(cur.rec.expiresAt > now()
        ? 'scrub lock: its holder was a process of this host that is gone (killed); taking it over before its lease ends'
        : 'scrub lock: the previous holder\'s lease expired without a release (killed, or stopped); taking it over', { vdisk: id, previous: cur.rec });
    }
    const gen = (cur?.gen ?? 0) + 1;
    const key = lockKey(id, gen);
    const t = now();
    const rec: ScrubLockRecord = { holder: opts.holder, host: os.hostname(), pid: process.pid, token: randomUUID(), takenAt: t, expiresAt: t + leaseMs };
    const body = Buffer.from(JSON.stringify(rec));
    if (store.createExclusive !== undefined) {
      if (!(await store.createExclusive(key, body))) {
        const winner = await newest(store, id);
        throw busy(id, winner?.rec ?? { ...rec, holder: 'another scrubber', host: '?', pid: 0 });
      }
    } else {
      // a store without an atomic create (test wrappers): put and read back; the later of two racing puts wins
      await store.put(key, body);
      const back = await newest(store, id);
      if (back === null || back.rec?.token !== rec.token) throw busy(id, back?.rec ?? rec);
    }
    for (const old of cur === null ? [] : [...cur.older, cur.key]) await store.delete(old).catch(() => undefined);
    const lock = new ScrubLock(store, id, key, rec, leaseMs, now);
    lock.timer = setInterval(() => {
      lock.renewing = lock.renewing.then(() => lock.renew());
    }, Math.max(1, Math.floor(leaseMs / 3)));
    lock.timer.unref();
    log.info('scrub lock taken', { vdisk: id, holder: rec.holder, generation: gen, leaseMs });
    return lock;
  }

  /** Throws (BUSY) if another scrubber took the lock over: the job stops at its next step. */
  check(): void {
    if (this.lostTo !== null) throw new VolumeError('BUSY', `the scrub lock of vDisk ${this.vdisk} was lost to ${describeHolder(this.lostTo)} (this scrubber did not renew in time): stopping`, { vdisk: this.vdisk, scrubLock: true });
  }

  private async renew(): Promise<void> {
    if (this.done || this.lostTo !== null) return;
    try {
      this.rec = { ...this.rec, expiresAt: this.now() + this.leaseMs };
      await this.store.put(this.key, Buffer.from(JSON.stringify(this.rec)));
      const n = await newest(this.store, this.vdisk);
      if (n !== null && n.key !== this.key && n.key > this.key) {
        this.lostTo = n.rec ?? { ...this.rec, holder: 'another scrubber' };
        log.warn('scrub lock lost: another scrubber took it over after the lease expired', { vdisk: this.vdisk, to: this.lostTo });
      }
    } catch (err) {
      // the backend is away: the next renewal tries again; if the lease runs out meanwhile, a taker may win
      log.warn('scrub lock: renewal failed', { vdisk: this.vdisk, error: (err as Error).message });
    }
  }

  /** Stops renewing and marks the lease released (unless it was lost). Never throws: a failed release expires. */
  async release(): Promise<void> {
    if (this.done) return;
    this.done = true;
    clearInterval(this.timer);
    await this.renewing;
    if (this.lostTo !== null) return;
    try {
      await this.store.put(this.key, Buffer.from(JSON.stringify({ ...this.rec, released: true })));
    } catch (err) {
      log.warn('scrub lock: release failed; it expires by itself', { vdisk: this.vdisk, error: (err as Error).message, expiresAt: this.rec.expiresAt });
    }
  }

  /** Runs `fn` under the lock of vDisk `id`, released at the end (also on failure). */
  static async with<T>(store: BlobStore, id: string, opts: ScrubLockOptions, fn: (lock: ScrubLock) => Promise<T>): Promise<T> {
    const lock = await ScrubLock.take(store, id, opts);
    try {
      return await fn(lock);
    } finally {
      await lock.release();
    }
  }
}
