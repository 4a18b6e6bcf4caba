/**
 * What `vpoolfs mount --registry` does with the registry (docs/cluster.md), start to stop:
 *
 *   start()    register the router (./router-registry.ts), then take ownership of the vPool (./ownership.ts):
 *              refused while another live router owns it — or, standing by (`--standby`), wait until it can. `takeover` says that the previous owner's lease
 *              is gone: the mount then takes the backend's claim (volume/claim/) from it at once (force),
 *              which fences that router if it still runs (paused, cut off).
 *   attach()   once the vPool is open: its vDisks are recorded as owned, and checked again every third of
 *              the lease (new and removed vDisks, and whether ownership is still this router's: a router
 *              that finds its vPool taken over logs it and makes the backend claim renew at once, which fences it: the new
 *              owner took the backend claim too).
 *              Following (`follow`): while a live router owns the vPool, start() does not refuse but returns a
 *              session with `following` set (that owner's registration: where its router link listens); the
 *              mount forwards to it (tools/daemon/follower.ts), and becomeOwner() makes it the owner after a
 *              takeover (the owner tag's transaction: takeVPool).
 *   ackCheck() before the owner acknowledges a write, discard, resize or fsync (volume/ VDiskContext.beforeAck):
 *              nothing while this router's ownership was confirmed and its lease renewed within half the TTL;
 *              otherwise one check first, and FENCED if the vPool was taken over. A router that was paused
 *              (SIGSTOP, a VM freeze) past its lease and resumed would otherwise acknowledge the writes its
 *              clients sent meanwhile — into its write cache and its DTL, which the new owner never reads —
 *              until its next periodic check (test/cluster-netns-owner-late-ack.test.ts).
 *   stop()     a clean stop: ownership released, registration removed.
 *
 * No I/O waits for etcd: with etcd down the router goes on serving what it owns (the backend claim keeps
 * it honest), and nobody can take anything over (taking needs etcd).
 */
import { logger } from '../util/log.js';
import { checkBeforeAck } from '../util/stale-confirmation.js';
import { RouterRegistry, type JoinOptions } from './router-registry.js';
import { recordVDisks, releaseVPool, takeVPool, vpoolOwner, type KnownRecords, type Taken } from './ownership.js';
import { BackendError, isCode } from '../util/errors.js';
import { RegistryError } from './errors.js';
import type { Protection, RouterRecord, Waiting } from './keys.js';
import type { Listed } from './vpool-walk.js';

const log = logger('registry');

/** How often the owner looks at its vDisks' protection (local, no etcd unless it changed). */
export const WATCH_MS = 250;

export interface SessionOptions extends JoinOptions {
  vpool: string;
  force?: boolean;
  /** Wait while another live router owns the vPool (or etcd does not answer); take it once it can be taken. */
  standby?: boolean;
  /** Ends a standby (SIGTERM while waiting): start() then throws RegistryError CLOSED, having left the registry. */
  signal?: AbortSignal;
  /** While another live router owns the vPool, follow it (instead of refusing): see `following`. */
  follow?: boolean;
}

/** The refusal of takeVPool for a dead owner's vDisks at risk, as what a waiting taker records; else null. */
export function waitingOf(err: unknown, vpool: string): Waiting | null {
  const ctx = (err as RegistryError).context;
  if (!isCode(err, 'BUSY') || ctx?.risks === undefined) return null;
  const owner = ctx.owner as { router: string; tag: number };
  return { vpool, owner: owner.router, tag: owner.tag, since: new Date().toISOString(), risks: ctx.risks as Waiting['risks'] };
}

/**
 * A standby router: registered (router list shows it, owning nothing), it tries to take the vPool every
 * quarter second until the owner's registration is gone — its lease expired: dead, cut off or paused — and
 * then takes it over like any taker. etcd not answering only makes it wait longer: nothing is taken without it.
 */
async function standBy(registry: RouterRegistry, opts: SessionOptions): Promise<Taken> {
  const t0 = Date.now();
  let said = '';
  for (;;) {
    if (opts.signal?.aborted === true) throw new RegistryError('CLOSED', `stopped while standing by for vPool '${opts.vpool}': nothing was mounted`, { vpool: opts.vpool });
    try {
      const taken = await takeVPool(registry.client, opts.vpool, opts.name, false, opts.state);
      if (said !== '') log.info(`standby over: took vPool '${opts.vpool}' after ${Date.now() - t0} ms`, { vpool: opts.vpool, tag: taken.tag, previous: taken.previous, waitedMs: Date.now() - t0 });
      return taken;
    } catch (err) {
      const waiting = waitingOf(err, opts.vpool);
      if (waiting !== null) {
        // the dead owner's vDisks may lose writes: only `vpoolfs takeover --force` lets this router take them
        const key = `unsafe ${waiting.owner} ${waiting.tag} ${JSON.stringify(waiting.risks.map((r) => [r.id, r.dtl?.mode, r.dtl?.state]))}`;
        if (said !== key) {
          log.warn(`NOT TAKING OVER: ${(err as Error).message}`, { vpool: opts.vpool, router: opts.name, owner: waiting.owner, risks: waiting.risks });
          await registry.update({ waiting });
        }
        said = key;
      } else {
        const why = isCode(err, 'BUSY') ? (err as Error).message : `the registry does not answer (${(err as Error).message})`;
        const key = isCode(err, 'BUSY') ? 'busy' : 'down';
        if (said !== key) log.info(`standing by: ${why}`, { vpool: opts.vpool, router: opts.name });
        said = key;
      }
      await new Promise((r) => {
        const timer = setTimeout(r, 250);
        opts.signal?.addEventListener('abort', () => { clearTimeout(timer); r(undefined); }, { once: true });
      });
    }
  }
}

export class RouterSession {
  private timer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> | null = null;
  private lostTo: string | null = null;
  private listVDisks: (() => Listed[]) | null = null;
  /** Each vDisk's protection as last seen, and since when it holds (the `since` recorded in etcd). */
  private readonly protection = new Map<string, Protection>();
  private watchTimer: NodeJS.Timeout | null = null;
  /** The vDisk list with protection (no `since`) last seen by watch(): a change triggers a sync. */
  private seen = '';
  private failing = false;
  /** performance.now() when the last check that found the vPool still this router's was ASKED (ackCheck). */
  private confirmedMono = -Infinity;
  /**
   * The list watch() saw last and its version (bumped at each change); the version recorded in etcd (-1: record
   * at the next sync). A sync records the watch's list rather than walking the tree again, and only when it
   * changed: the periodic check is then one read of the owner key, not a walk of every vDisk (16 µs each: at
   * 10,000 vDisks a walk every third of a 2 s lease took a third of the router's event loop).
   */
  private latest: Listed[] | null = null;
  private version = 0;
  private recordedVersion = -1;
  /** The vDisk records this router wrote (what etcd holds): a change writes only what differs (ownership.ts). */
  private readonly known: KnownRecords = { records: null };
  /** holdRecords() calls not released yet: no vDisk record is written meanwhile. */
  private recordsHeld = 0;
  private readonly lostListeners: Array<(owner: string) => void> = [];

  /** The live owner this router follows (its registration), or null: this router owns the vPool. */
  following: RouterRecord | null = null;

  private constructor(readonly registry: RouterRegistry, private readonly opts: SessionOptions, public tag: number, public takeover: boolean) {}

  static async start(opts: SessionOptions): Promise<RouterSession> {
    const registry = await RouterRegistry.join({ ...opts, role: opts.standby === true ? 'standby' : undefined });
    try {
      let taken: Taken;
      try {
        taken = await (opts.standby === true ? standBy(registry, opts) : takeVPool(registry.client, opts.vpool, opts.name, opts.force === true, opts.state));
      } catch (err) {
        const owner = (err as RegistryError).context?.router as RouterRecord | undefined;
        if (opts.follow !== true || !isCode(err, 'BUSY') || owner === undefined) throw err;
        log.info(`following: vPool '${opts.vpool}' is owned by router '${owner.name}' (alive, router link at ${owner.address ?? 'none'}): this router's mount forwards every call there`, { vpool: opts.vpool, owner: owner.name, address: owner.address });
        const s = new RouterSession(registry, opts, 0, false);
        s.following = owner;
        await registry.update({ role: 'follower' });
        return s;
      }
      await registry.update({ role: 'owner', waiting: null });
      const s = new RouterSession(registry, opts, taken.tag, taken.takeover);
      registry.onRejoined(() => {
        s.recordedVersion = -1;
        s.known.records = null;
        void s.sync();
      });
      return s;
    } catch (err) {
      if (!isCode(err, 'CLOSED')) log.error(`refused: ${(err as Error).message}`, { vpool: opts.vpool, router: opts.name });
      await registry.leave();
      throw err;
    }
  }

  /**
   * The vDisk records are about to change outside this session (a vDisk delegated or taken back,
   * ./vdisk-delegation.ts): no record is written from now on (a write running now ends first) until
   * releaseRecords(), which drops the cache of what it wrote — its next write reads the records first. Without
   * this a write with the stale cache, or one already running, would delete the delegate's record (fencing it).
   * The last list the watch saw is dropped too: taken before a handover it still names the delegated vDisk as
   * this router's, and the next write would put it back under this router (seen: the delegate fenced at once).
   */
  async holdRecords(): Promise<void> {
    this.recordsHeld++;
    await this.syncing;
  }

  releaseRecords(): void {
    this.known.records = null;
    this.latest = null;
    this.seen = '';
    this.recordedVersion = -1;
    this.recordsHeld--;
  }

  /** A follower took the vPool (takeVPool succeeded for it): it is the owner from now on. */
  async becomeOwner(taken: Taken): Promise<void> {
    this.tag = taken.tag;
    this.takeover = taken.takeover;
    this.following = null;
    // (its router link's address is recorded once it serves one)
    this.registry.onRejoined(() => {
      this.recordedVersion = -1;
      this.known.records = null;
      void this.sync();
    });
    await this.registry.update({ role: 'owner', waiting: null });
  }

  /**
   * Stops recording the vDisks (a planned move closes the vPool: registry/move.ts writes their records for the
   * new owner in its handover transaction); attach() starts again if the move is abandoned.
   */
  async detach(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    this.timer = null;
    this.watchTimer = null;
    await this.syncing;
    this.listVDisks = null;
    this.seen = '';
    this.latest = null;
    this.recordedVersion = -1;
    this.known.records = null;
  }

  /** This router handed the vPool to `owner` (a planned move): it follows it from now on. */
  async becomeFollower(owner: RouterRecord): Promise<void> {
    await this.detach();
    this.following = owner;
    this.tag = 0;
    this.takeover = false;
    // its router link is closed: nobody may take its old address for the new owner's
    await this.registry.update({ role: 'follower', address: null });
  }

  /** The registry's options of this session (the follower reads its name, state and vPool). */
  get options(): Readonly<SessionOptions> {
    return this.opts;
  }

  /**
   * Starts recording the vPool's vDisks (`list` walks its tree). Besides the check every third of the lease, a
   * local watch looks at the vDisks' protection (DTL mode and state, unshipped or not) every WATCH_MS — or
   * less often on a large vPool: at most 5% of a core on the walk — and syncs at once when it changed. So a
   * vDisk's record follows its DTL state transitions and its clean/dirty transitions within WATCH_MS, and
   * etcd sees at most one transaction per WATCH_MS from a router (one per change, none in a steady state).
   */
  attach(list: () => Listed[]): Promise<void> {
    this.listVDisks = list;
    const every = Math.max(500, Math.floor((this.opts.leaseSeconds * 1000) / 3));
    this.timer = setInterval(() => void this.sync(), every).unref();
    this.watch();
    return this.sync();
  }

  private watch(): void {
    if (this.listVDisks === null || this.lostTo !== null || this.timer === null) return;
    const t0 = Date.now();
    try {
      this.look();
    } catch (err) {
      log.warn('listing the vDisks for the registry failed', { error: String((err as Error).message ?? err) });
    }
    this.watchTimer = setTimeout(() => this.watch(), Math.max(WATCH_MS, 20 * (Date.now() - t0))).unref();
  }

  /** Looks at the vDisks now (what the watch does every WATCH_MS) and records a change at once. */
  async refresh(): Promise<void> {
    await this.syncing; // one in flight may have read the version before this change
    if (this.listVDisks === null) return;
    this.look();
    await this.sync();
  }

  /** One look of the watch: a list different from the last one seen is a new version, and syncs. */
  private look(): void {
    const list = this.listVDisks!();
    const now = JSON.stringify(list);
    if (now !== this.seen) {
      this.seen = now;
      this.latest = list;
      this.version++;
      void this.sync();
    }
  }

  /** The list with each vDisk's protection and since when it holds. */
  private withSince(list: Listed[]): Array<{ id: string; path: string; dtl: Protection }> {
    const now = new Date().toISOString();
    const ids = new Set<string>();
    const out = list.map((d) => {
      ids.add(d.id);
      const cur = this.protection.get(d.id);
      const same = cur !== undefined && cur.mode === d.dtl.mode && cur.state === d.dtl.state && cur.dirty === d.dtl.dirty;
      const p: Protection = same ? cur : { ...d.dtl, since: now };
      this.protection.set(d.id, p);
      return { id: d.id, path: d.path, dtl: p };
    });
    for (const id of [...this.protection.keys()]) if (!ids.has(id)) this.protection.delete(id);
    return out;
  }

  /** One check of ownership and the vDisk records (single flight). */
  sync(): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => { this.syncing = null; });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (this.listVDisks === null || this.lostTo !== null || this.recordsHeld > 0) return;
    const { client } = this.registry;
    const asked = performance.now(); // what etcd says holds from the question on, not from the answer
    try {
      // the vDisk records are rewritten when the list changed (or after a rejoin); otherwise one read of the
      // owner key says whether the vPool is still this router's
      const version = this.version;
      const owner0 = version === this.recordedVersion ? await vpoolOwner(client, this.opts.vpool) : null;
      const still = owner0 !== null && owner0.router === this.opts.name && owner0.tag === this.tag;
      if (still || await recordVDisks(client, this.opts.vpool, this.opts.name, this.tag, this.withSince(this.latest ?? this.listVDisks()), this.known)) {
        this.recordedVersion = version;
        this.confirmedMono = Math.max(this.confirmedMono, asked);
        if (this.failing) log.info('the registry answers again: vDisk ownership recorded', { vpool: this.opts.vpool, tag: this.tag });
        this.failing = false;
        return;
      }
      const owner = await vpoolOwner(client, this.opts.vpool);
      this.lostTo = owner === null ? '(nobody)' : owner.router;
      log.error(`OWNERSHIP LOST: vPool '${this.opts.vpool}' is now owned by ${owner === null ? 'nobody' : `router '${owner.router}' (owner tag ${owner.tag} > ${this.tag})`}: this router's lease expired while it was cut off or paused. Its backend writes are refused once the backend claim sees the new owner; its vDisks answer EIO`,
        { vpool: this.opts.vpool, tag: this.tag, owner });
      for (const fn of this.lostListeners) fn(this.lostTo);
    } catch (err) {
      if (!this.failing) log.warn('recording vDisk ownership in the registry failed (etcd unreachable?); the router keeps serving what it owns and retries', { vpool: this.opts.vpool, error: String((err as Error).message ?? err) });
      this.failing = true;
    }
  }

  /**
   * Before an acknowledgement of the owner's I/O (see the header): null when nothing needs checking — the last
   * confirmation and the last lease renewal are within half the TTL (nobody can have taken the vPool over: that
   * needs this router's lease to expire), or the registry does not answer (etcd down: nobody can take anything
   * over; a router cut off from etcd but not from its clients stays a limit, docs/cluster.md). Otherwise a check,
   * bounded by a quarter of the TTL (not answering counts as above), then FENCED if the vPool is another's.
   * The rule is util/stale-confirmation.ts's, shared with the delegate's gate (volume/claim/vdisk-gate.ts beforeAck).
   */
  ackCheck(what: string): Promise<void> | null {
    const half = this.opts.leaseSeconds * 500;
    return checkBeforeAck({
      lost: () => this.lostTo === null ? null : this.lostError(what),
      // not attached (nothing recorded yet, or detached for a move): nothing to check
      failing: this.failing || this.listVDisks === null,
      validUntil: Math.min(this.confirmedMono, this.registry.renewedAtMono) + half,
      confirm: () => this.sync(),
      waitMs: half / 2,
    });
  }

  private lostError(what: string): BackendError {
    return new BackendError('FENCED', `${what}: not acknowledged, router '${this.lostTo}' owns vPool '${this.opts.vpool}' now (this router's lease expired while it was cut off or paused)`, { vpool: this.opts.vpool, owner: this.lostTo });
  }

  /** Runs once when another router is found owning the vPool (the mount makes the backend claim renew at once). */
  onLost(fn: (owner: string) => void): void {
    this.lostListeners.push(fn);
  }

  /** Who took the vPool over, or null while this router owns it. */
  get lost(): string | null {
    return this.lostTo;
  }

  /** A clean stop: ownership released (if still held), the registration removed. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    await this.syncing;
    if (this.lostTo === null && this.following === null) {
      try {
        if (await releaseVPool(this.registry.client, this.opts.vpool, this.opts.name, this.tag)) log.info(`released ownership of vPool '${this.opts.vpool}'`, { tag: this.tag });
      } catch (err) {
        log.warn('releasing ownership in the registry failed (etcd unreachable?): another router takes over once this router\'s lease has expired', { error: String((err as Error).message ?? err) });
      }
    }
    await this.registry.leave();
  }
}
