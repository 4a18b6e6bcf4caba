/**
 * A follower router's daemon side (docs/cluster.md, "Followers"): `vpoolfs mount --registry …` that finds the
 * vPool owned by another live router mounts it anyway, with a handler table that forwards every call to the
 * owner over the router link (router-link/follower-table.ts), and watches the registry every quarter second:
 *
 * - the owner alive with a router link address: connected to it (again after a broken connection; to the
 *   new one after a change of owner: every open file is re-opened there by path);
 * - the owner's registration gone (its lease expired: dead, cut off, paused) or the vPool released (a clean
 *   stop): the connection is dropped (calls in flight and new ones wait, at most `waitMs` each) and this
 *   router takes the vPool in the registry (the owner tag's transaction: of several followers one wins, the
 *   others follow the winner). A follower in the dead owner's failure domain lets the others try first for
 *   DEFER_MS when another ranks first (registry/placement.ts: another failure domain, then the least loaded). `owned` resolves once this router won: the mount
 *   then opens the vPool (the takeover path of --standby: the backend claim taken from the dead owner) and
 *   serveLocally() switches the table to its own handlers — the mount stays.
 *
 * With a registry every mount is such a table, the owner's too (`owning`: it starts serving its own handlers
 * without following anyone), so that ownership can go both ways in place: a planned move (`vpoolfs move`,
 * tools/daemon/handover.ts) makes the old owner followAgain() the new one — its open files re-opened there by
 * path, its waiting calls run there — and the new one, a follower until then, finds itself the owner in the
 * registry at its next check (`MOVE:` in its log) and takes the vPool as after a takeover, without the
 * failure-domain deferral and without forcing the backend claim (the old owner released it).
 */
import { FdTable } from '../../fuse/fds.js';
import { Fence } from '../../fuse/fence.js';
import type { MountHandlers } from '../../fuse/handlers.js';
import { mountWith, type FuseEngine, type Mounted } from '../../fuse/mount.js';
import { releaseVPool, takeVPool, vpoolOwner, type Taken } from '../../registry/ownership.js';
import { knownRouterKey, routerKey, type RouterRecord } from '../../registry/keys.js';
import { describeLoad, rankFollowers } from '../../registry/placement.js';
import { waitingOf, type RouterSession } from '../../registry/router-session.js';
import { LinkClient } from '../../router-link/client.js';
import { FollowerTable } from '../../router-link/follower-table.js';
import { RoutedTable, VDiskRoutes } from '../../router-link/vdisk-routes.js';
import { isCode } from '../../util/errors.js';
import { logger } from '../../util/log.js';

const log = logger('follower');

/** How often the registry is read while following. */
export const POLL_MS = 250;
/** How long a follower in the dead owner's failure domain leaves the takeover to one in another domain. */
export const DEFER_MS = 1500;

export interface FollowerOptions {
  session: RouterSession;
  vpool: string;
  router: string;
  state: string;
  failureDomain?: string;
  mountpoint: string;
  engine: FuseEngine;
  debug?: boolean;
  secret?: Buffer;
  /** How long a call waits while no router serves the vPool before it answers EIO. */
  waitMs: number;
  /** The mount went away from outside. */
  onLost?: (why: string) => void;
  /** This router owns the vPool already: the table waits for serveLocally() instead of following anyone. */
  owning?: boolean;
  /**
   * The kernel engine may answer READs of this router's own vDisks in its reader threads (fuse/kernel/fast-read.ts)
   * while it owns the vPool; off with metrics on (those READs would bypass the counts, as on a plain mount).
   */
  fastReads?: boolean;
}

export class Follower {
  readonly table: FollowerTable;
  /** Ownership per vDisk: where each delegated vDisk's per-file calls go, on every table of this router. */
  readonly routes: VDiskRoutes;
  /** The mount's table: `table` (the vPool) with the delegated vDisks routed to their routers. */
  readonly routed: RoutedTable;
  private readonly fence = new Fence();
  private mounted!: Mounted;
  private client: LinkClient | null = null;
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private stopped = false;
  /** The owner this router followed last (its failure domain decides the deferral). */
  private lastOwner: RouterRecord;
  private goneSince: number | null = null;
  private said = '';
  private resolveOwned!: (t: Taken) => void;
  /** Resolves once this router has taken the vPool over in the registry (again after each followAgain()). */
  owned: Promise<Taken>;
  /** The last change of owner came from a planned move to this router (not a takeover). */
  movedHere = false;
  private readonly t0 = Date.now();
  private downAt: number | null = null;
  /** This router's registration says it waits for `vpoolfs takeover --force`. */
  private waiting = false;

  private constructor(private readonly opts: FollowerOptions) {
    this.lastOwner = opts.session.following ?? opts.session.registry.record;
    this.owned = new Promise((r) => (this.resolveOwned = r));
    this.table = new FollowerTable(opts.waitMs, () => void this.check());
    this.routes = new VDiskRoutes(opts.waitMs);
    this.routed = new RoutedTable(this.routes, this.table.ops, this.table.readerFds());
    // a rename through this router's link (owning the vPool) reaches the vPool without this table: its handles follow
    this.routes.onRename((from, to) => this.table.followRename(from, to));
  }

  /** Mounts the follower's table (calls wait until the owner's link answers) and starts following. */
  static async start(opts: FollowerOptions): Promise<Follower> {
    const f = new Follower(opts);
    const ops = { ...f.routed.ops };
    f.fence.guard(ops);
    f.mounted = await mountWith({ vpool: { name: opts.vpool }, mountpoint: opts.mountpoint, engine: opts.engine, debug: opts.debug, onLost: opts.onLost }, { ops, fds: opts.fastReads === true ? f.routed.readerFds() : new FdTable(), fence: f.fence });
    if (opts.owning === true) {
      // the owner's own mount: its handlers take over once the vPool is open (serveLocally)
      f.stopped = true;
      return f;
    }
    log.info('mounted as a follower: every call goes to the vPool\'s owner', { mountpoint: opts.mountpoint, vpool: opts.vpool, owner: f.lastOwner.name });
    f.timer = setInterval(() => void f.check(), POLL_MS);
    await f.check();
    return f;
  }

  /**
   * The vPool was handed to router `owner` (a planned move, tools/daemon/handover.ts): this mount follows it
   * from now on — the table is held already (calls wait); once its link answers, every open file is re-opened
   * there by path and the waiting calls run there. `owned` resolves again if this router gets the vPool back.
   */
  followAgain(owner: RouterRecord): void {
    this.lastOwner = owner;
    this.client?.close('this router handed the vPool over');
    this.client = null;
    this.owned = new Promise((r) => (this.resolveOwned = r));
    this.goneSince = null;
    this.downAt = Date.now();
    this.said = '';
    this.movedHere = false;
    this.stopped = false;
    this.timer = setInterval(() => void this.check(), POLL_MS);
    log.info(`MOVE: this router's mount follows router '${owner.name}' now: its open files are re-opened there once its router link answers`, { vpool: this.opts.vpool, owner: owner.name });
    void this.check();
  }

  /** Whether this router's mount is connected to the owner's link now (metrics). */
  get linked(): boolean {
    return this.client !== null && this.client.alive && this.table.kind === 'remote';
  }

  /** Open handles of this router's own mount (the automatic move looks at it). */
  get openHandles(): number {
    return this.routed.openHandles;
  }

  /** Once this router owns the vPool and has opened it: its own handlers serve the mount from now on. */
  async serveLocally(h: MountHandlers): Promise<Mounted> {
    await this.table.switchTo({ kind: 'local', ops: h.ops, fds: h.fds });
    if (this.lastOwner.name === this.opts.router) log.info(`serving vPool '${this.opts.vpool}' with this router's own handlers`, { vpool: this.opts.vpool });
    else if (this.movedHere) log.info(`MOVE: vPool '${this.opts.vpool}' moved here from router '${this.lastOwner.name}': serving it here, the mount stayed`, { vpool: this.opts.vpool, previous: this.lastOwner.name, sinceHandoverMs: this.downAt === null ? null : Date.now() - this.downAt });
    else log.info(`took vPool '${this.opts.vpool}' over from router '${this.lastOwner.name}': serving it here, the mount stayed`,
      { vpool: this.opts.vpool, previous: this.lastOwner.name, sinceOwnerLostMs: this.downAt === null ? null : Date.now() - this.downAt });
    const m = this.mounted;
    return {
      mountpoint: m.mountpoint, engine: m.engine, options: m.options, fds: h.fds,
      fence: () => h.fence.close(),
      changed: (p, how) => m.changed(p, how),
      unmount: () => m.unmount(),
    };
  }

  /** A follower's clean stop: the mount goes, the link closes (the caller leaves the registry). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
    this.table.close();
    await this.fence.close();
    await this.mounted.unmount();
    this.client?.close('this follower stops');
  }

  private check(): Promise<void> {
    if (this.stopped || this.table.kind === 'local') return Promise.resolve();
    this.checking ??= this.checkOnce().catch((err: unknown) => {
      this.say('etcd', 'reading the registry failed (etcd unreachable?): calls keep waiting; nothing is taken over without the registry', { error: String((err as Error).message ?? err) });
    }).finally(() => { this.checking = null; });
    return this.checking;
  }

  private say(key: string, msg: string, fields: Record<string, unknown> = {}): void {
    if (this.said === key) return;
    this.said = key;
    log.info(msg, { vpool: this.opts.vpool, ...fields });
  }

  private async readRouter(name: string, live: boolean): Promise<RouterRecord | null> {
    const v = await this.opts.session.registry.client.get(live ? routerKey(name) : knownRouterKey(name)).string();
    return v === null ? null : (JSON.parse(v) as RouterRecord);
  }

  private async checkOnce(): Promise<void> {
    const { session, vpool, router } = this.opts;
    const etcd = session.registry.client;
    const owner = await vpoolOwner(etcd, vpool);
    if (this.stopped || this.table.kind === 'local') return;
    if (owner !== null && owner.router !== router) {
      const rec = await this.readRouter(owner.router, true);
      if (rec !== null) {
        this.goneSince = null;
        this.lastOwner = rec;
        if (rec.address === null) return this.say(`noaddr ${rec.name}`, `router '${rec.name}' owns the vPool but serves no router link yet: calls wait`);
        if (this.client !== null && this.client.alive && this.client.router === rec.name && this.client.address === rec.address) return;
        this.client?.close(`the vPool's owner is router '${rec.name}' at ${rec.address} now`);
        let c: LinkClient;
        try {
          c = await LinkClient.connect({ address: rec.address, secret: this.opts.secret, vpool, router });
        } catch (err) {
          return this.say(`connect ${rec.address} ${(err as Error).message}`, `cannot reach the router link of router '${rec.name}' at ${rec.address}: calls wait, tried again every ${POLL_MS} ms`, { error: (err as Error).message });
        }
        if (this.stopped) return c.close();
        this.client = c;
        this.said = '';
        if (this.waiting) {
          this.waiting = false;
          await session.registry.update({ waiting: null });
        }
        c.onClose((why) => {
          if (this.downAt === null) this.downAt = Date.now();
          this.table.lost(c, why);
        });
        await this.table.switchTo({ kind: 'remote', client: c });
        this.downAt = null;
        log.info(`following router '${rec.name}': its router link at ${rec.address} answers`, { vpool, owner: rec.name, address: rec.address, failureDomain: rec.failureDomain });
        return;
      }
    }
    if (owner !== null && owner.router === router) return this.movedToMe(owner.tag, owner.movedFrom);
    // the owner's registration is gone (its lease expired) or the vPool is unowned (released by a clean stop)
    const dead = this.lastOwner;
    if (this.downAt === null) this.downAt = Date.now();
    this.goneSince ??= Date.now();
    if (this.client !== null) {
      this.client.close(owner === null ? 'the vPool was released (its owner stopped)' : `router '${owner.router}' lost its registry lease`);
      this.client = null;
    }
    this.table.down(owner === null ? 'the vPool has no owner' : `its owner '${owner.router}' is gone (registry lease expired)`);
    if (await this.defer(dead) || this.stopped) return;
    let taken: Taken;
    try {
      taken = await takeVPool(etcd, vpool, router, false, this.opts.state);
    } catch (err) {
      // the dead owner's vDisks were not all recorded safe: wait for `vpoolfs takeover --force` (calls answer
      // EIO after waitMs meanwhile); shown in this router's registration (router list) and its log
      const waiting = waitingOf(err, vpool);
      if (waiting !== null) {
        const key = `unsafe ${waiting.owner} ${waiting.tag} ${JSON.stringify(waiting.risks.map((r) => [r.id, r.dtl?.mode, r.dtl?.state]))}`;
        if (this.said !== key) {
          this.said = key;
          log.warn(`NOT TAKING OVER: ${(err as Error).message}`, { vpool, owner: waiting.owner, risks: waiting.risks });
          await session.registry.update({ waiting });
          this.waiting = true;
        }
        return;
      }
      // another follower won the owner tag's transaction: follow it at the next check
      if (isCode(err, 'BUSY')) return this.say('lost race', 'another router took the vPool over first: following it', { error: (err as Error).message });
      throw err;
    }
    if (this.stopped) {
      // this follower is stopping (a signal came meanwhile): the vPool goes back to nobody, for another router
      await releaseVPool(etcd, vpool, router, taken.tag).catch(() => undefined);
      return;
    }
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    log.warn(`TAKEOVER: this follower took vPool '${vpool}' in the registry (owner tag ${taken.tag}) from router '${dead.name}' (${owner === null ? 'released' : 'lease expired'}); opening it here, calls wait meanwhile`,
      { vpool, tag: taken.tag, previous: dead.name, previousFailureDomain: dead.failureDomain, failureDomain: this.opts.failureDomain ?? null, followingForMs: Date.now() - this.t0 });
    this.resolveOwned(taken);
  }

  /**
   * The registry names this router the owner: the old owner handed the vPool over (registry/move.ts: it shipped
   * everything and released the backend claim first). Calls wait until this router has opened it.
   */
  private async movedToMe(tag: number, from: string | undefined): Promise<void> {
    const { session, vpool, router } = this.opts;
    this.client?.close(`the vPool moves to this router (owner tag ${tag})`);
    this.client = null;
    this.table.down('the vPool moves to this router: opening it');
    const taken = await takeVPool(session.registry.client, vpool, router, false, this.opts.state);
    if (this.stopped) {
      await releaseVPool(session.registry.client, vpool, router, taken.tag).catch(() => undefined);
      return;
    }
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.movedHere = true;
    this.downAt ??= Date.now();
    log.warn(`MOVE: router '${from ?? this.lastOwner.name}' handed vPool '${vpool}' to this router (owner tag ${taken.tag}); opening it here, calls wait meanwhile`, { vpool, tag: taken.tag, previous: from ?? this.lastOwner.name });
    this.resolveOwned(taken);
  }

  /**
   * True while this router should let another follower take the vPool first: a live follower of this vPool
   * ranks before it (registry/placement.ts: another failure domain than the dead owner's, then the least loaded
   * machine, then by name) and the owner has been gone less than DEFER_MS.
   */
  private async defer(dead: RouterRecord): Promise<boolean> {
    if (this.goneSince === null || Date.now() - this.goneSince >= DEFER_MS) return false;
    const me = this.opts.session.registry.record;
    const ranked = await rankFollowers(this.opts.session.registry.client, this.opts.vpool, me, dead);
    const first = ranked[0]!;
    if (first.router.name === me.name) return false;
    const mine = ranked.find((r) => r.router.name === me.name)!;
    if (mine.sameDomain && !first.sameDomain) {
      const elsewhere = ranked.filter((r) => !r.sameDomain);
      this.say('defer', `deferring the takeover for up to ${DEFER_MS} ms: router(s) ${elsewhere.map((r) => `'${r.router.name}'`).join(', ')} follow the vPool from another failure domain than the dead owner's (${dead.failureDomain}); '${first.router.name}' first (the least loaded)`,
        { preferred: first.router.name, loads: Object.fromEntries(ranked.map((r) => [r.router.name, r.load])) });
    } else {
      this.say('defer', `deferring the takeover for up to ${DEFER_MS} ms to router '${first.router.name}': the least loaded of the routers that follow the vPool in the preferred failure domain (its machine runs ${describeLoad(first.load)}, this router's ${describeLoad(mine.load)}; ties by name)`,
        { preferred: first.router.name, loads: Object.fromEntries(ranked.map((r) => [r.router.name, r.load])) });
    }
    return true;
  }
}
