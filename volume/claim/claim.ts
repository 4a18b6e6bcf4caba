/**
 * The claim on a vPool's backend, held in the backend itself (no registry): which router serves the vPool,
 * under which epoch, until when. docs/cluster.md explains the whole scheme; in short:
 *
 *   pool/claim/<epoch, 16 hex digits>   {epoch, router, host, pid, stateId, token, leaseMs, renewedAt, expiresAt}
 *
 * - The epoch counts changes of holder: a router that takes the vPool writes the object of the next epoch
 *   (the highest one present + 1; none present = epoch 0, a backend from before claims). The highest epoch
 *   object is the claim; lower ones are history (deleted by the next holder, recreated harmlessly by a zombie).
 * - Taking: refused while the highest claim is live (not released, not expired) and held by another state
 *   directory, unless `force`. The same state directory on the same host may take it back at once: the state
 *   lock (tools/daemon/state-lock.ts) proves the daemon that held it is gone.
 * - Two routers taking at once: with `createExclusive` (file:// link(2), S3 If-None-Match: *, mem://)
 *   exactly one creates the epoch object; a store without it is written, `settleMs` waited and read back
 *   (the last writer wins). Either way the winner reads its object back and compares its token, so a store
 *   that ignored the condition leaves at most a window until the loser's next renewal fences it (docs/cluster.md).
 * - The backend unreachable at a restart: deferred() serves the local state and takes the claim later.
 * - The holder renews every lease/3: it checks that its epoch object is still its own and that no next
 *   epoch exists, then rewrites it with a new expiry. Seeing a newer epoch fences the router for good
 *   (`onFenced`); failing to renew (a backend outage) only holds its backend writes back (gate()).
 * - gate() runs before every backend write of the vPool (./fenced-store.ts): when the last renewal is more
 *   than one and a half renewal periods old (SIGSTOP, a stalled event loop, a failed renewal) it renews first, so a resumed zombie finds out it
 *   lost the claim before it writes anything. A write already on its way when the process stopped is not
 *   stopped by this: the fence in the data (../datapath/formats/epoch-fence.ts) makes such late writes count for nothing.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { BackendError, isCode, VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import { sleep } from '../backend/retry.js';

const log = logger('claim');

export const CLAIM_PREFIX = 'pool/claim/';
export const claimKey = (epoch: number): string => `${CLAIM_PREFIX}${epoch.toString(16).padStart(16, '0')}`;
export const DEFAULT_LEASE_MS = 30_000;

export interface ClaimRecord {
  epoch: number;
  router: string;
  host: string;
  pid: number;
  /** A random id kept in the state directory's metadata store: which state directory holds the claim. */
  stateId: string;
  /** Unique per take: tells two routers that wrote the same epoch apart. */
  token: string;
  leaseMs: number;
  /** Wall-clock ms of the last renewal (of its start) and of the expiry it promised. */
  renewedAt: number;
  expiresAt: number;
  /** Set by a clean stop: anyone may take the vPool at once. */
  released?: boolean;
  /** With a registry (registry/ownership.ts): the owner tag etcd gave the holder; a lower tag never takes this claim. */
  ownerTag?: number;
}

export interface ClaimOptions {
  router: string;
  stateId: string;
  /** How long a claim lives without renewal (ms); renewed every third of it. */
  leaseMs?: number;
  /** Take the vPool even from a live holder (logged loudly). */
  force?: boolean;
  /** Stores without createExclusive: how long to wait before reading the epoch object back (ms). */
  settleMs?: number;
  /**
   * With a registry: the owner tag of this router's ownership of the vPool. Recorded in the claim; a claim
   * recorded with a higher tag is refused even with `force` (a taker that lost the vPool in etcd while it
   * was on its way here must not fence the newer owner).
   */
  ownerTag?: number;
}

/** Another router holds the vPool: the mount is refused with this (its message names the holder). */
export class ClaimRefused extends VolumeError {
  constructor(message: string, readonly holder: ClaimRecord) {
    super('BUSY', message, { holder });
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The highest-epoch claim in the backend, or null (a backend from before claims, or a new one). */
export async function currentClaim(backend: BlobStore): Promise<ClaimRecord | null> {
  for (let attempt = 0; ; attempt++) {
    const keys = await backend.list(CLAIM_PREFIX);
    if (keys.length === 0) return null;
    try {
      return JSON.parse((await backend.get(keys[keys.length - 1])).toString()) as ClaimRecord;
    } catch (err) {
      // deleted between the listing and the read (a new holder cleans old epochs): list again
      if (!isCode(err, 'NOT_FOUND') || attempt >= 5) throw err;
    }
  }
}

async function readEpoch(backend: BlobStore, epoch: number): Promise<ClaimRecord | null> {
  try {
    return JSON.parse((await backend.get(claimKey(epoch))).toString()) as ClaimRecord;
  } catch (err) {
    if (isCode(err, 'NOT_FOUND')) return null;
    throw err;
  }
}

function describe(c: ClaimRecord): string {
  return `router '${c.router}' on host ${c.host} (pid ${c.pid}, epoch ${c.epoch}), last renewed ${iso(c.renewedAt)}, claim expires ${iso(c.expiresAt)}`;
}

export class BackendClaim {
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  /** performance.now() at the start of the last successful renewal (the take counts as one). */
  private lastRenewMono = 0;
  private fencedWhy: string | null = null;
  private suspended = false;
  private failures = 0;
  private readonly listeners: Array<(why: string) => void> = [];
  private rec!: ClaimRecord;
  /** Not taken yet: the backend was unreachable at start (see deferred()). */
  private pending = false;
  private onTaken: ((c: BackendClaim) => Promise<void>) | null = null;
  /** The claim this one replaced (null: none in the backend). */
  previous: ClaimRecord | null = null;
  /** The previous holder was this state directory on this host (a restart, not a takeover). */
  sameState = false;
  readonly renewMs: number;

  private constructor(private readonly backend: BlobStore, private readonly opts: ClaimOptions & { leaseMs: number }) {
    this.renewMs = Math.max(1, Math.floor(opts.leaseMs / 3));
  }

  private static options(opts: ClaimOptions): ClaimOptions & { leaseMs: number } {
    const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    if (!Number.isInteger(leaseMs) || leaseMs < 300) throw new VolumeError('INVALID', `the claim lease must be at least 300 ms, got ${leaseMs}`, { leaseMs });
    return { ...opts, leaseMs };
  }

  /** Takes the vPool's claim, or throws ClaimRefused naming the holder. Starts the renewals. */
  static async acquire(backend: BlobStore, opts: ClaimOptions): Promise<BackendClaim> {
    const claim = new BackendClaim(backend, BackendClaim.options(opts));
    await claim.take(null);
    claim.timer = setInterval(() => void claim.renew(), claim.renewMs).unref();
    return claim;
  }

  /**
   * A restart while the backend is unreachable (the local state can serve): the claim is taken once the
   * backend answers — backend writes wait until then (gate()). If another state directory held the vPool
   * since `heldEpoch` (the epoch this state directory last held), this router is fenced instead: its local
   * state is stale. `onTaken` runs once the claim is taken (before any backend write goes through).
   */
  static deferred(backend: BlobStore, opts: ClaimOptions, heldEpoch: number, onTaken: (c: BackendClaim) => Promise<void>): BackendClaim {
    const claim = new BackendClaim(backend, BackendClaim.options({ ...opts, force: false }));
    claim.pending = true;
    claim.onTaken = onTaken;
    claim.rec = { epoch: heldEpoch, router: opts.router, host: os.hostname(), pid: process.pid, stateId: opts.stateId, token: '', leaseMs: claim.opts.leaseMs, renewedAt: 0, expiresAt: 0 };
    claim.lastRenewMono = -Infinity;
    claim.timer = setInterval(() => void claim.renew(), claim.renewMs).unref();
    return claim;
  }

  /** `heldEpoch` (deferred takes): the vPool must not have changed holder since this state held that epoch. */
  private async take(heldEpoch: number | null): Promise<void> {
    const { backend, opts } = this;
    const leaseMs = opts.leaseMs;
    const startMono = performance.now();
    const cur = await currentClaim(backend);
    const host = os.hostname();
    const sameState = cur !== null && cur.stateId === opts.stateId && cur.host === host;
    if (heldEpoch !== null && !sameState && (cur?.epoch ?? 0) !== heldEpoch) {
      return this.fence(`the vPool was served by ${cur === null ? 'another router' : describe(cur)} since this state directory held it (epoch ${heldEpoch}), while this router started without its backend: its local state is stale; mount again to rebuild from the backend`);
    }
    if (opts.ownerTag !== undefined && cur?.ownerTag !== undefined && cur.ownerTag > opts.ownerTag) {
      throw new ClaimRefused(`the vPool's backend is held by ${describe(cur)} with owner tag ${cur.ownerTag}, newer than this router's ${opts.ownerTag}: the registry gave the vPool to that router`, cur);
    }
    const now = Date.now();
    const live = cur !== null && !cur.released && now <= cur.expiresAt;
    if (cur !== null && live && !sameState) {
      if (opts.force !== true) {
        throw new ClaimRefused(`the vPool's backend is in use by ${describe(cur)}. Mount it here once that router is stopped `
          + `or its claim has expired, or take it now with --force (only if that router is really gone: it will be fenced)`, cur);
      }
      log.warn(`FORCED TAKEOVER: taking the vPool from a live claim of ${describe(cur)}; that router is fenced from now on: its uploads count for nothing and its I/O fails`, { previous: cur });
    } else if (cur !== null && !sameState && !cur.released) {
      log.warn(`taking over an expired claim of ${describe(cur)}`, { previous: cur });
    }
    const rec: ClaimRecord = {
      epoch: (cur?.epoch ?? 0) + 1, router: opts.router, host, pid: process.pid, stateId: opts.stateId, token: randomUUID(),
      leaseMs, renewedAt: now, expiresAt: now + leaseMs, ...(opts.ownerTag === undefined ? {} : { ownerTag: opts.ownerTag }),
    };
    const body = Buffer.from(JSON.stringify(rec));
    const raced = (winner: ClaimRecord | null) => new ClaimRefused(
      `another router claimed the vPool's backend at the same time${winner === null ? '' : `: ${describe(winner)}`}; try again later`, winner ?? rec);
    if (backend.createExclusive !== undefined) {
      if (!(await backend.createExclusive(claimKey(rec.epoch), body))) throw raced(await readEpoch(backend, rec.epoch));
      const back = await readEpoch(backend, rec.epoch); // a store that ignored the condition: the last writer holds it
      if (back?.token !== rec.token) throw raced(back);
    } else {
      // no atomic create: the last writer of the epoch object wins once every writer has waited settleMs
      await backend.put(claimKey(rec.epoch), body);
      await sleep(opts.settleMs ?? Math.min(2000, Math.floor(leaseMs / 10)));
      const back = await readEpoch(backend, rec.epoch);
      if (back?.token !== rec.token) throw raced(back);
    }
    const next = await readEpoch(backend, rec.epoch + 1);
    if (next !== null) throw raced(next);
    // older epochs are history: best effort (a zombie renewing its own recreates it, lower, harmless)
    for (const key of await backend.list(CLAIM_PREFIX)) {
      if (key < claimKey(rec.epoch)) await backend.delete(key).catch(() => undefined);
    }
    this.rec = rec;
    this.previous = cur;
    this.sameState = sameState;
    this.lastRenewMono = startMono;
    log.info('claimed the vPool', { epoch: rec.epoch, router: rec.router, leaseMs, previous: cur === null ? null : { epoch: cur.epoch, router: cur.router, host: cur.host, released: cur.released ?? false }, restart: sameState });
  }

  /** The epoch held (while a deferred claim is not taken yet: the one this state directory held last). */
  get epoch(): number {
    return this.rec.epoch;
  }

  /** Taken yet? (false only for a deferred claim while the backend is unreachable) */
  get taken(): boolean {
    return !this.pending;
  }

  get record(): Readonly<ClaimRecord> {
    return this.rec;
  }

  /** Why this router lost the claim, or null while it holds it. */
  get fenced(): string | null {
    return this.fencedWhy;
  }

  /** Whether renewals have failed for longer than the lease (backend writes wait). */
  get expired(): boolean {
    return this.suspended;
  }

  onFenced(fn: (why: string) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Before a backend write: FENCED once the claim is lost (never retried); BACKEND (retried by the caller)
   * while it cannot be confirmed. After a pause longer than half a renewal period it renews first.
   */
  async gate(what: string): Promise<void> {
    if (this.fencedWhy !== null) throw this.fencedError(what);
    if (performance.now() - this.lastRenewMono > this.renewMs * 1.5) await this.renew();
    if (this.fencedWhy !== null) throw this.fencedError(what);
    if (this.pending || performance.now() - this.lastRenewMono > this.renewMs * 1.5) {
      throw new BackendError('BACKEND', `${what}: held back, the claim on the vPool could not be ${this.pending ? 'taken yet' : 'renewed'}`, { epoch: this.rec.epoch });
    }
  }

  /** One renewal (single flight): confirm that the claim is still ours, then extend it. */
  renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => { this.renewing = null; });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    if (this.fencedWhy !== null || this.timer === null) return;
    const t0 = performance.now();
    if (this.pending) {
      try {
        await this.take(this.rec.epoch);
        if (this.fencedWhy !== null) return;
        await this.onTaken?.(this);
        this.pending = false;
        log.info('the backend answers: claim taken, backend writes go on', { epoch: this.rec.epoch });
      } catch (err) {
        this.failures++;
        if (err instanceof ClaimRefused) return this.fence(err.message);
        if (this.failures === 1) log.warn('taking the claim failed (backend unreachable?); backend writes wait, retried every renewal period', { error: String((err as Error).message ?? err) });
      }
      return;
    }
    try {
      const next = await readEpoch(this.backend, this.rec.epoch + 1);
      if (next !== null) return this.fence(`${describe(next)} took the vPool over (epoch ${next.epoch} > ${this.rec.epoch})`);
      const mine = await readEpoch(this.backend, this.rec.epoch);
      if (mine === null || mine.token !== this.rec.token) {
        return this.fence(mine === null ? `the claim object of epoch ${this.rec.epoch} was removed` : `${describe(mine)} claimed the same epoch ${this.rec.epoch}`);
      }
      const now = Date.now();
      const rec = { ...this.rec, renewedAt: now, expiresAt: now + this.rec.leaseMs };
      await this.backend.put(claimKey(rec.epoch), Buffer.from(JSON.stringify(rec)));
      this.rec = rec;
      this.lastRenewMono = t0;
      if (this.suspended || this.failures > 0) log.info('claim renewed again; backend writes go on', { epoch: rec.epoch, failedRenewals: this.failures });
      this.suspended = false;
      this.failures = 0;
    } catch (err) {
      this.failures++;
      if (this.failures === 1) log.warn('renewing the claim failed; retried at the next renewal', { epoch: this.rec.epoch, error: String((err as Error).message ?? err) });
      if (!this.suspended && performance.now() - this.lastRenewMono > this.rec.leaseMs) {
        this.suspended = true;
        log.error('the claim has expired without renewal (backend unreachable?): backend writes wait; another router may take the vPool over now', { epoch: this.rec.epoch, failures: this.failures });
      }
    }
  }

  /**
   * Fenced from outside: the registry says another router owns the vPool now (registry/router-session.ts),
   * whatever the backend says yet. Logged and final, like a fence found in the backend.
   */
  fenceNow(why: string): void {
    this.fence(why);
  }

  private fence(why: string): void {
    if (this.fencedWhy !== null) return;
    this.fencedWhy = why;
    if (this.timer !== null) clearInterval(this.timer);
    log.error(`FENCED: this router lost its claim on the vPool: ${why}. It writes nothing more to the backend and answers I/O with EIO; its unshipped writes are not in what the new holder serves`, { epoch: this.rec.epoch, router: this.rec.router });
    for (const fn of this.listeners) fn(why);
  }

  private fencedError(what: string): BackendError {
    return new BackendError('FENCED', `${what}: refused, this router lost its claim on the vPool (${this.fencedWhy})`, { epoch: this.rec.epoch });
  }

  /** A clean stop: the claim is marked released (anyone may take it at once) unless it was lost. */
  async release(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.renewing;
    if (this.fencedWhy !== null || this.pending) return;
    const next = await readEpoch(this.backend, this.rec.epoch + 1).catch(() => null);
    if (next !== null) return;
    const now = Date.now();
    await this.backend.put(claimKey(this.rec.epoch), Buffer.from(JSON.stringify({ ...this.rec, renewedAt: now, expiresAt: now, released: true })));
    log.info('claim released', { epoch: this.rec.epoch });
  }

  /** Stops renewing without releasing (the process goes away; the claim expires). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
