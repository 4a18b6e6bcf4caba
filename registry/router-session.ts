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
 *   stop()     a clean stop: ownership released, registration removed.
 *
 * No I/O waits for etcd: with etcd down the router goes on serving what it owns (the backend claim keeps
 * it honest), and nobody can take anything over (taking needs etcd).
 */
import { logger } from '../util/log.js';
import { RouterRegistry, type JoinOptions } from './router-registry.js';
import { recordVDisks, releaseVPool, takeVPool, vpoolOwner, type Taken } from './ownership.js';
import { isCode } from '../util/errors.js';
import { RegistryError } from './errors.js';
import type { RouterRecord } from './keys.js';

const log = logger('registry');

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
      const why = isCode(err, 'BUSY') ? (err as Error).message : `the registry does not answer (${(err as Error).message})`;
      const key = isCode(err, 'BUSY') ? 'busy' : 'down';
      if (said !== key) log.info(`standing by: ${why}`, { vpool: opts.vpool, router: opts.name });
      said = key;
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
  private listVDisks: (() => Array<{ id: string; path: string }>) | null = null;
  private failing = false;
  /** The vDisk list last recorded in etcd (JSON), null: record it at the next sync. */
  private recorded: string | null = null;
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
      await registry.update({ role: 'owner' });
      const s = new RouterSession(registry, opts, taken.tag, taken.takeover);
      registry.onRejoined(() => {
        s.recorded = null;
        void s.sync();
      });
      return s;
    } catch (err) {
      if (!isCode(err, 'CLOSED')) log.error(`refused: ${(err as Error).message}`, { vpool: opts.vpool, router: opts.name });
      await registry.leave();
      throw err;
    }
  }

  /** A follower took the vPool (takeVPool succeeded for it): it is the owner from now on. */
  async becomeOwner(taken: Taken): Promise<void> {
    this.tag = taken.tag;
    this.takeover = taken.takeover;
    this.following = null;
    this.registry.onRejoined(() => {
      this.recorded = null;
      void this.sync();
    });
    await this.registry.update({ role: 'owner' });
  }

  /** The registry's options of this session (the follower reads its name, state and vPool). */
  get options(): Readonly<SessionOptions> {
    return this.opts;
  }

  /** Starts recording the vPool's vDisks (`list` walks its tree). */
  attach(list: () => Array<{ id: string; path: string }>): Promise<void> {
    this.listVDisks = list;
    const every = Math.max(500, Math.floor((this.opts.leaseSeconds * 1000) / 3));
    this.timer = setInterval(() => void this.sync(), every).unref();
    return this.sync();
  }

  /** One check of ownership and the vDisk records (single flight). */
  sync(): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => { this.syncing = null; });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (this.listVDisks === null || this.lostTo !== null) return;
    const { client } = this.registry;
    try {
      // the vDisk records are rewritten when the list changed (or after a rejoin); otherwise one read of the
      // owner key says whether the vPool is still this router's
      const list = this.listVDisks();
      const listed = JSON.stringify(list);
      const owner0 = listed === this.recorded ? await vpoolOwner(client, this.opts.vpool) : null;
      const still = owner0 !== null && owner0.router === this.opts.name && owner0.tag === this.tag;
      if (still || await recordVDisks(client, this.opts.vpool, this.opts.name, this.tag, list)) {
        this.recorded = listed;
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
