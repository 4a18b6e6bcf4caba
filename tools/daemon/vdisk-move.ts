/**
 * The vPool owner's side of ownership per vDisk (docs/cluster.md, "Ownership per vDisk"): while this router owns
 * the vPool it polls the vDisk move requests (registry/vdisk-move.ts, every quarter second) and runs them:
 *
 *   to a follower B   the vDisk's calls are held on every table of this router (router-link/vdisk-routes.ts: its
 *                     own mount, its router link) and the running ones answer; VPool.handOverVDisk ships it whole
 *                     and closes it here; delegateVDisk records B as its owner under a new owner tag (one etcd
 *                     transaction); B is asked over its delegate link to serve it (tools/daemon/delegate-side.ts:
 *                     its gate confirmed, opened from the backend, fenced); then its per-file calls are routed to
 *                     B and the held ones run there. B not taking it: it is returned and taken back here.
 *   back here         held the same way; B hands it back (shipped, closed); returnVDisk under a new tag;
 *                     VPool.takeBackVDisk rebuilds it here; routed here again.
 *   to another C      back here, then to C.
 *   back from a dead B  (its registration gone, or re-registered under another lease) the registry's rule decides:
 *                     safe record → returnVDisk fromDead and takeBackVDisk (the DTL recovery); else refused, and
 *                     only `move FILE --to <owner> --force` takes it back.
 * At this owner's start (adopt) the delegated records read before the vPool opened are routed to their live
 * delegates or taken back; each poll watches the delegates' registrations the same way. The takebacks without
 * the delegate (dead, this router itself, a former owner's undone one) and their retry when the open here fails:
 * tools/daemon/vdisk-takeback.ts; the delegate links: tools/daemon/delegate-links.ts.
 * Every open file of it keeps its handle: the tables re-open it by path where it is served at its next call.
 */
import { E } from '../../fuse/errno.js';
import { delegateVDisk, delegationTarget, returnVDisk } from '../../registry/vdisk-delegation.js';
import type { OwnerRecord } from '../../registry/keys.js';
import { endVDiskMove, readVDiskMove, vdiskMovePhase, type VDiskMoveRequest } from '../../registry/vdisk-move.js';
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import { logger } from '../../util/log.js';
import { DelegateLinks, type Peer } from './delegate-links.js';
import { Takebacks, type Delegation, type TakebackOptions } from './vdisk-takeback.js';

const log = logger('cli');
const POLL_MS = 250;

/** The takebacks' options (tools/daemon/vdisk-takeback.ts: session, vpool, router, routes, waitMs, ownOps) and the links' secret. */
export interface VDiskMoverOptions extends TakebackOptions {
  secret?: Buffer;
}

export class VDiskMover {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly peers = new Map<string, Peer>();
  /** path → the delegate serving it now. */
  private readonly served = new Map<string, Delegation>();
  private readonly links: DelegateLinks;
  private readonly takebacks: Takebacks;

  constructor(private readonly opts: VDiskMoverOptions) {
    this.links = new DelegateLinks(this.peers, { session: opts.session, vpool: opts.vpool.name, router: opts.router, secret: opts.secret, waitMs: opts.waitMs });
    this.takebacks = new Takebacks(opts, this.served, this.peers);
  }

  /** vDisks delegated now: path → router. */
  get delegated(): Map<string, string> {
    return new Map([...this.served].map(([p, d]) => [p, d.router]));
  }

  /**
   * A control call on the delegate link of the router serving `p` now (tools/daemon/delegate-calls.ts: the API's
   * routes and the snapshot schedule on a delegated vDisk); undefined when `p` is not delegated. Rejects when that
   * router's link is down (no bound of its own: the caller bounds it).
   */
  async callDelegate(p: string, op: string, args: unknown[]): Promise<{ router: string; code: number; values: unknown[] } | undefined> {
    const d = this.served.get(p);
    if (d === undefined) return undefined;
    const c = this.peers.get(d.router)?.client;
    if (c == null || !c.alive) throw new Error('its delegate link is down');
    return { router: d.router, ...(await c.call(op, args)) };
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.running ??= this.poll().catch((err: unknown) => { log.warn('reading the vDisk move requests failed (etcd unreachable?)', { error: String((err as Error).message ?? err) }); })
        .finally(() => { this.running = null; });
    }, POLL_MS);
  }

  /** Stops polling (a running move finishes first). */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Every delegated vDisk back here (a clean stop or a vPool move: they go with the vPool). */
  async takeAllBack(why: string): Promise<void> {
    await this.takebacks.giveUpPending();
    for (const [p, d] of [...this.served]) {
      try {
        if (await this.takebacks.isGone(d)) {
          // nobody to hand it back: the takeback rule decides (refused, it stays in the registry for the next owner)
          const refusal = await this.takebacks.takeBack(p, d, true);
          if (refusal !== null) log.error(`TAKEBACK: vDisk ${p} not taken back from dead router '${d.router}' at this stop (${refusal}): the release keeps its record; the vPool's next owner meets the same question`, { path: p, from: d.router });
          else log.info(`took vDisk ${p} back from dead router '${d.router}': ${why}`, { path: p, from: d.router });
          continue;
        }
        await this.back(p, d);
        log.info(`took vDisk ${p} back from router '${d.router}': ${why}`, { path: p, from: d.router });
      } catch (err) {
        log.error(`taking vDisk ${p} back from router '${d.router}' failed: ${(err as Error).message}`, { path: p, from: d.router });
      }
    }
    this.links.closeAll(why);
  }

  /**
   * At this owner's start (a restart, a takeover, a move in): the vDisks the registry recorded as delegated,
   * read before the vPool opened (which left them closed: VPoolOptions.delegated). One delegated to a live router
   * is routed to it as if this router had delegated it; one delegated to a dead router, or to this router itself
   * (it served it as a delegate before it took the vPool: its delegate side closed it), is taken back here
   * (a refused one is tried again by each poll: checkDelegates).
   */
  async adopt(records: ReadonlyMap<string, OwnerRecord>): Promise<void> {
    for (const [id, rec] of records) {
      try {
        await this.adoptOne(id, rec);
      } catch (err) {
        // (etcd not answering: the path stays held; each poll's checkDelegates looks again at what was adopted)
        log.error(`vDisk ${rec.path ?? id}, recorded as delegated to router '${rec.router}', could not be adopted: ${(err as Error).message}`, { vdisk: id, router: rec.router });
      }
    }
  }

  private async adoptOne(id: string, rec: OwnerRecord): Promise<void> {
    const { session, routes } = this.opts;
    {
      if (rec.path === undefined) {
        log.error(`vDisk ${id} is recorded as delegated to router '${rec.router}' without its path: it cannot be routed; its calls answer BUSY until an operator acts`, { vdisk: id, router: rec.router });
        return;
      }
      const d = { id, router: rec.router, tag: rec.tag, lease: rec.lease, undone: rec.delegatedBy === rec.router };
      this.served.set(rec.path, d);
      if (rec.router === this.opts.router) {
        await this.takebacks.takeBack(rec.path, d, false);
        return;
      }
      if (d.undone) {
        // a takeback the vPool's former owner could not finish (its open failed): nobody serves it; the record's
        // protection decides, as from a dead delegate (registry/vdisk-delegation.ts returnVDisk)
        log.warn(`vDisk ${rec.path} is recorded as a takeback router '${rec.router}' (the vPool's former owner) had still to do: taking it back`, { path: rec.path, router: rec.router, tag: rec.tag });
        await this.takebacks.takeBack(rec.path, d, true);
        return;
      }
      const v = await session.registry.client.get(routerKey(rec.router)).string();
      if (v === null || (rec.lease !== undefined && (JSON.parse(v) as RouterRecord).lease !== rec.lease)) {
        log.warn(`vDisk ${rec.path} is recorded as delegated to router '${rec.router}', ${v === null ? 'whose registration is gone' : 'registered again since (restarted: it does not serve the vDisk)'}: taking it back`, { path: rec.path, router: rec.router, tag: rec.tag });
        await this.takebacks.takeBack(rec.path, d, true);
        return;
      }
      try {
        const peer = await this.links.peer(JSON.parse(v) as RouterRecord);
        routes.set(rec.path, peer.table.ops);
        log.warn(`vDisk ${rec.path} stays served by router '${rec.router}' (owner tag ${rec.tag}): its calls go there`, { path: rec.path, router: rec.router, tag: rec.tag });
      } catch (err) {
        // not reachable now: its calls stay held (each at most waitMs, then EIO) until the link or the takeback
        log.error(`vDisk ${rec.path} is served by router '${rec.router}', which this router cannot reach now: ${(err as Error).message}`, { path: rec.path, router: rec.router });
        void this.links.reconnect(rec.router).then(() => {
          const p = this.peers.get(rec.router);
          if (p?.client?.alive === true && this.served.get(rec.path!)?.router === rec.router) routes.set(rec.path!, p.table.ops);
        });
      }
    }
  }

  private async poll(): Promise<void> {
    const { session, vpool, router } = this.opts;
    const etcd = session.registry.client;
    await this.takebacks.poll();
    const req = await readVDiskMove(etcd, vpool.name);
    if (req === null || req.from !== router || req.tag !== session.tag) return;
    log.warn(`MOVE: moving vDisk ${req.path} of vPool '${vpool.name}' to router '${req.to}' (asked at ${req.at})`, { path: req.path, to: req.to, id: req.id });
    const t0 = Date.now();
    try {
      const what = await this.move(req);
      log.warn(`MOVE: ${what} after ${Date.now() - t0} ms`, { path: req.path, to: req.to, ms: Date.now() - t0 });
      await endVDiskMove(etcd, req, true, `${what} after ${Date.now() - t0} ms`);
    } catch (err) {
      const why = (err as Error).message;
      log.warn(`MOVE: vDisk ${req.path} not moved to router '${req.to}': ${why}`, { path: req.path, to: req.to });
      await endVDiskMove(etcd, req, false, why);
    }
  }

  private async move(req: VDiskMoveRequest): Promise<string> {
    const { router } = this.opts;
    const cur = this.served.get(req.path);
    if (req.to === router) {
      if (cur === undefined) throw new Error(`${req.path} is served by router '${router}' (the vPool's owner) already`);
      if (cur.undone === true || await this.takebacks.isGone(cur)) {
        // its delegate is dead: nobody to hand it back; the registry's rule decides (unsafe: only with --force)
        const why = await this.takebacks.takeBack(req.path, cur, true, req.force === true);
        if (why !== null) throw new Error(`${why}${req.force === true || this.takebacks.pendingCause(req.path) !== undefined ? '' : '. `vpoolfs move FILE --to ' + router + ' --force` takes it back anyway, losing those writes'}`);
        return `vDisk ${req.path} is served by router '${router}' (the vPool's owner) again, taken back from dead router '${cur.router}'${req.force === true ? ' (forced)' : ''}`;
      }
      await this.back(req.path, cur);
      return `vDisk ${req.path} is served by router '${router}' (the vPool's owner) again, taken back from router '${cur.router}'`;
    }
    if (cur?.router === req.to) throw new Error(`${req.path} is served by router '${req.to}' already`);
    if (cur !== undefined) {
      await vdiskMovePhase(this.opts.session.registry.client, req, `taking it back from router '${cur.router}'`).catch(() => undefined);
      await this.back(req.path, cur);
    }
    await vdiskMovePhase(this.opts.session.registry.client, req, `handing it to router '${req.to}'`).catch(() => undefined);
    const tag = await this.hand(req.path, req.to);
    return `vDisk ${req.path} is served by router '${req.to}' now (owner tag ${tag})`;
  }

  /** Hands the vDisk at `p` to router `to`; returns the new owner tag. */
  private async hand(p: string, to: string): Promise<number> {
    const { session, vpool, router, routes } = this.opts;
    const etcd = session.registry.client;
    const target = await delegationTarget(etcd, vpool.name, router, to);
    const peer = await this.links.peer(target);
    await routes.hold(p, `vDisk ${p} moves to router '${to}'`);
    let id: string;
    try {
      ({ id } = await vpool.handOverVDisk!(p, to));
    } catch (err) {
      routes.release(p);
      throw err;
    }
    await session.holdRecords();
    const tag = await delegateVDisk(etcd, vpool.name, id, p, { router, tag: session.tag }, target).catch((err: unknown) => {
      log.warn('MOVE: recording the vDisk\'s handover failed (etcd unreachable?)', { path: p, error: String((err as Error).message ?? err) });
      return null;
    }).finally(() => session.releaseRecords());
    if (tag === null) {
      const opened = await this.takebacks.openHere(p, id, session.tag, `the handover to router '${to}' that did not hold`, Date.now());
      throw new Error(`the handover transaction did not hold (router '${to}' went away, or the vPool or the vDisk's record changed meanwhile): ${p} stays here${opened ? '' : ' (its open here failed: tried again until it opens)'}`);
    }
    const r = await (peer.client === null ? Promise.resolve({ code: E.EIO }) : peer.client.call('vdiskServe', [id, p, tag]).catch(() => ({ code: E.EIO })));
    if (r.code < 0) {
      await session.holdRecords();
      const back = await returnVDisk(etcd, vpool.name, id, { router, tag: session.tag }, { router: to, tag }).finally(() => session.releaseRecords());
      if (back !== null) {
        await this.takebacks.openHere(p, id, back, `router '${to}', which did not take it`, Date.now());
      } else {
        log.error(`MOVE: router '${to}' did not take vDisk ${p} and its record could not be given back: its calls wait`, { path: p, to });
      }
      throw new Error(`router '${to}' could not serve ${p} (errno ${-r.code}; see its log): ${back === null ? 'its calls wait' : 'it stays here'}`);
    }
    this.served.set(p, { id, router: to, tag, lease: target.lease });
    routes.set(p, peer.table.ops);
    return tag;
  }

  /** Takes the vDisk at `p` back from its delegate `d`. */
  private async back(p: string, d: { id: string; router: string; tag: number }): Promise<void> {
    const { session, vpool, router, routes } = this.opts;
    const etcd = session.registry.client;
    const heldSince = Date.now();
    await routes.hold(p, `vDisk ${p} moves back to router '${router}'`);
    const peer = this.peers.get(d.router);
    const r = peer?.client == null ? { code: E.EIO } : await peer.client.call('vdiskReturn', [d.id]).catch(() => ({ code: E.EIO }));
    if (r.code < 0) {
      routes.release(p);
      throw new Error(`router '${d.router}' did not hand ${p} back (errno ${-r.code}; see its log): it serves it on`);
    }
    let tag: number | null;
    await session.holdRecords();
    try {
      tag = await returnVDisk(etcd, vpool.name, d.id, { router, tag: session.tag }, { router: d.router, tag: d.tag });
      if (tag === null) throw new Error(`the return of ${p} did not hold in the registry (its record changed): its calls wait`);
    } finally {
      session.releaseRecords();
    }
    this.served.delete(p);
    if (!await this.takebacks.openHere(p, d.id, tag, `router '${d.router}'`, heldSince)) throw new Error(`router '${d.router}' handed ${p} back but it could not be opened here yet (${this.takebacks.pendingCause(p)}): tried again until it opens`);
  }
}
