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
 * delegates or taken back; each poll watches the delegates' registrations (checkDelegates) the same way.
 * A takeback whose return held in the registry but whose open here failed (the backend refusing at that moment:
 * takeBackVDisk) is tried again with a back-off (retryPending, `TAKEBACK: … trying again` in the log with the
 * cause each time) until it opens: its calls wait meanwhile while that stays within half of waitMs, then answer
 * BUSY with the cause — never EIO; its record stays this router's with `delegatedBy` (returnVDisk), so that the
 * session keeps it and a restart, a takeover or a release hands it on as a takeback still to do.
 * Every open file of it keeps its handle: the tables re-open it by path where it is served at its next call.
 */
import { E } from '../../fuse/errno.js';
import type { Handlers } from '../../fuse/handlers.js';
import { delegateVDisk, delegationTarget, returnVDisk } from '../../registry/vdisk-delegation.js';
import { isCode } from '../../util/errors.js';
import type { OwnerRecord } from '../../registry/keys.js';
import { endVDiskMove, readVDiskMove, vdiskMovePhase, type VDiskMoveRequest } from '../../registry/vdisk-move.js';
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import { LinkClient } from '../../router-link/client.js';
import { FollowerTable } from '../../router-link/follower-table.js';
import type { VDiskRoutes } from '../../router-link/vdisk-routes.js';
import { logger } from '../../util/log.js';
import type { VPool } from '../../volume/types.js';

const log = logger('cli');
const POLL_MS = 250;
/** The back-off of a takeback whose open failed: from RETRY_MIN_MS, doubled each try, at most RETRY_MAX_MS. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

/** A takeback returned in the registry (owner tag `tag`) whose open here failed: tried again at `nextAt`. */
interface PendingTakeback {
  id: string;
  from: string;
  tag: number;
  tries: number;
  nextAt: number;
  cause: string;
  /** When the path's calls were held for it (null: they answer BUSY now). */
  heldSince: number | null;
}

interface Peer {
  router: string;
  address: string;
  client: LinkClient | null;
  table: FollowerTable;
}

export interface VDiskMoverOptions {
  session: RouterSession;
  vpool: VPool;
  router: string;
  routes: VDiskRoutes;
  secret?: Buffer;
  waitMs: number;
  /**
   * This router's own handlers (the vPool's): a dead delegate's link table is switched to them once its vDisk is
   * taken back, so that the calls that were on their way to it run here (see takeBack).
   */
  ownOps?: () => Handlers | undefined;
}

export class VDiskMover {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly peers = new Map<string, Peer>();
  /** path → the delegate serving it now. */
  private readonly served = new Map<string, { id: string; router: string; tag: number; lease?: string; undone?: boolean }>();
  /** id → why its takeback from a dead delegate was refused (logged once, tried again each poll). */
  private readonly refused = new Map<string, string>();
  /** path → a takeback whose open here failed, tried again (retryPending). */
  private readonly pending = new Map<string, PendingTakeback>();

  constructor(private readonly opts: VDiskMoverOptions) {}

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
    // a takeback still failing stays in the registry as one to do (its record: this router's, delegatedBy): the
    // release keeps it, and the next owner of the vPool takes it back
    for (const [p, t] of [...this.pending]) {
      if (!await this.openHere(p, t.id, t.tag, t.from, Date.now())) {
        log.error(`TAKEBACK: vDisk ${p} is still not open here at this stop (${t.cause}): the registry keeps it as a takeback to do for the vPool's next owner`, { path: p, tag: t.tag });
        this.pending.delete(p);
        // its calls go where this router's table sends them now: BUSY here while stopping, the next owner after a move
        this.opts.routes.set(p, null);
      }
    }
    for (const [p, d] of [...this.served]) {
      try {
        if (await this.isGone(d)) {
          // nobody to hand it back: the takeback rule decides (refused, it stays in the registry for the next owner)
          const refusal = await this.takeBack(p, d, true);
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
    for (const peer of this.peers.values()) {
      peer.client?.close(why);
      peer.table.close();
    }
    this.peers.clear();
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
        await this.takeBack(rec.path, d, false);
        return;
      }
      if (d.undone) {
        // a takeback the vPool's former owner could not finish (its open failed): nobody serves it; the record's
        // protection decides, as from a dead delegate (registry/vdisk-delegation.ts returnVDisk)
        log.warn(`vDisk ${rec.path} is recorded as a takeback router '${rec.router}' (the vPool's former owner) had still to do: taking it back`, { path: rec.path, router: rec.router, tag: rec.tag });
        await this.takeBack(rec.path, d, true);
        return;
      }
      const v = await session.registry.client.get(routerKey(rec.router)).string();
      if (v === null || (rec.lease !== undefined && (JSON.parse(v) as RouterRecord).lease !== rec.lease)) {
        log.warn(`vDisk ${rec.path} is recorded as delegated to router '${rec.router}', ${v === null ? 'whose registration is gone' : 'registered again since (restarted: it does not serve the vDisk)'}: taking it back`, { path: rec.path, router: rec.router, tag: rec.tag });
        await this.takeBack(rec.path, d, true);
        return;
      }
      try {
        const peer = await this.peer(JSON.parse(v) as RouterRecord);
        routes.set(rec.path, peer.table.ops);
        log.warn(`vDisk ${rec.path} stays served by router '${rec.router}' (owner tag ${rec.tag}): its calls go there`, { path: rec.path, router: rec.router, tag: rec.tag });
      } catch (err) {
        // not reachable now: its calls stay held (each at most waitMs, then EIO) until the link or the takeback
        log.error(`vDisk ${rec.path} is served by router '${rec.router}', which this router cannot reach now: ${(err as Error).message}`, { path: rec.path, router: rec.router });
        void this.reconnect(rec.router).then(() => {
          const p = this.peers.get(rec.router);
          if (p?.client?.alive === true && this.served.get(rec.path!)?.router === rec.router) routes.set(rec.path!, p.table.ops);
        });
      }
    }
  }

  /**
   * The delegates' registrations: a vDisk whose delegate's registration is gone (its lease expired: dead or cut
   * off — its gate stops its writes by then) is taken back here, with the DTL recovery of its unshipped writes,
   * if its record was safe (registry/vdisk-delegation.ts returnVDisk: else refused, logged, left as it is).
   */
  private async checkDelegates(): Promise<void> {
    const etcd = this.opts.session.registry.client;
    const regs = new Map<string, RouterRecord | null>();
    for (const [p, d] of [...this.served]) {
      if (d.router === this.opts.router) {
        await this.takeBack(p, d, false);
        continue;
      }
      if (d.undone === true) {
        await this.takeBack(p, d, true);
        continue;
      }
      if (!regs.has(d.router)) {
        const v = await etcd.get(routerKey(d.router)).string();
        regs.set(d.router, v === null ? null : (JSON.parse(v) as RouterRecord));
      }
      const reg = regs.get(d.router)!;
      if (reg === null || (d.lease !== undefined && reg.lease !== d.lease)) await this.takeBack(p, d, true);
    }
  }

  /** Is the delegate `d` gone (no registration, or one under another lease than the one it was handed the vDisk with)? */
  private async isGone(d: { router: string; lease?: string }): Promise<boolean> {
    const v = await this.opts.session.registry.client.get(routerKey(d.router)).string();
    return v === null || (d.lease !== undefined && (JSON.parse(v) as RouterRecord).lease !== d.lease);
  }

  /** Takes `p` back from its delegate `d` without asking it (dead, or this router itself, closed already). */
  private async takeBack(p: string, d: { id: string; router: string; tag: number }, fromDead: boolean, force = false): Promise<string | null> {
    const { session, vpool, router, routes } = this.opts;
    const etcd = session.registry.client;
    const heldSince = Date.now();
    const idle = routes.hold(p, `vDisk ${p} is taken back from router '${d.router}'`);
    // from a dead delegate, the calls running on p are waiting in its link table for a router that is gone: they
    // never answer by themselves (they would hold this takeback up for waitMs, then answer EIO); they run again
    // here once it is taken back (deadLinkServesHere below)
    if (!fromDead) await idle;
    let tag: number | null = null;
    await session.holdRecords();
    try {
      tag = await returnVDisk(etcd, vpool.name, d.id, { router, tag: session.tag }, { router: d.router, tag: d.tag }, { fromDead, force });
      if (tag !== null && force) log.warn(`TAKEBACK FORCED by \`vpoolfs move --force\`: vDisk ${p} from dead router '${d.router}': what it had not shipped and no sync DTL holds is lost`, { path: p, from: d.router });
    } catch (err) {
      const why = (err as Error).message;
      if (this.refused.get(d.id) !== why) log.error(`vDisk ${p} stays unavailable: ${why}`, { path: p, from: d.router, tag: d.tag });
      this.refused.set(d.id, why);
      // its calls answer here (BUSY naming the dead router) instead of waiting for a router that is gone
      if (isCode(err, 'BUSY') && fromDead) routes.set(p, null);
      else routes.release(p);
      return why;
    } finally {
      session.releaseRecords();
    }
    if (tag === null) {
      routes.release(p); // alive again, or the record changed (a later poll sees which)
      return `the return of ${p} from router '${d.router}' did not hold in the registry (it is alive again, or its record changed)`;
    }
    this.refused.delete(d.id);
    this.served.delete(p);
    const from = (d as { undone?: boolean }).undone === true ? `router '${d.router}' (the vPool's former owner, which could not open it)` : fromDead ? `dead router '${d.router}'` : `router '${d.router}' (this router, which served it as a delegate)`;
    if (!await this.openHere(p, d.id, tag, from, heldSince)) return `vDisk ${p} is router '${router}''s again (owner tag ${tag}) but could not be opened here yet (${this.pending.get(p)?.cause}): tried again until it opens`;
    if (fromDead) this.deadLinkServesHere(d.router);
    log.warn(`TAKEBACK: vDisk ${p} taken back from ${from}: served here under owner tag ${tag}${fromDead ? ', its unshipped writes recovered from the DTL' : ''}`, { path: p, from: d.router, tag });
    return null;
  }

  /**
   * Opens vDisk `id` at `p` here under owner tag `tag`, its return recorded already (returned from `from`; its calls
   * held since `heldSince`). False when it failed: then it is pending (retryPending tries again, back-off), the
   * cause logged; its calls stay held while that stays within half of waitMs (a held call answers EIO after
   * waitMs), else they answer BUSY with the cause (the vPool's table: volume/vpool-vdisks.ts).
   */
  private async openHere(p: string, id: string, tag: number, from: string, heldSince: number): Promise<boolean> {
    const { vpool, routes } = this.opts;
    try {
      await vpool.takeBackVDisk!(id, tag);
    } catch (err) {
      const cause = (err as Error).message;
      const t = this.pending.get(p) ?? { id, from, tag, tries: 0, nextAt: 0, cause, heldSince };
      t.tries++;
      t.cause = cause;
      t.tag = tag;
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(t.tries - 1, 10));
      t.nextAt = Date.now() + delay;
      // calls held past waitMs answer EIO: before that they answer BUSY (the cause may last: a backend outage)
      const keepHeld = t.heldSince !== null && Date.now() + delay - t.heldSince < this.opts.waitMs / 2;
      if (!keepHeld) {
        t.heldSince = null;
        routes.set(p, null);
      }
      this.pending.set(p, t);
      log.error(`TAKEBACK: vDisk ${p} is this router's again (owner tag ${tag}, returned from ${from}) but could not be opened here (try ${t.tries}): ${cause}; trying again in ${delay} ms, its calls ${keepHeld ? 'wait' : 'answer BUSY'} meanwhile`, { path: p, vdisk: id, tag, tries: t.tries, retryMs: delay, error: cause });
      return false;
    }
    const t = this.pending.get(p);
    this.pending.delete(p);
    routes.set(p, null);
    if (t !== undefined) log.warn(`TAKEBACK: vDisk ${p} opened here at try ${t.tries + 1} (returned from ${t.from}, owner tag ${tag}; the last failure: ${t.cause})`, { path: p, vdisk: id, tag, tries: t.tries + 1 });
    return true;
  }

  /**
   * The link table to a dead delegate serves with this router's own handlers from now on: the calls waiting in it
   * (those that were on their way when it died) run here, its open handles re-opened here by path. A handle of a
   * vDisk still delegated to it (its takeback refused) fails that re-open and answers EIO, as it would have after
   * waitMs. Should that router come back and be given a vDisk again, its link is connected anew (peer()).
   */
  private deadLinkServesHere(name: string): void {
    const p = this.peers.get(name);
    const ops = this.opts.ownOps?.();
    if (p === undefined || ops === undefined || p.client?.alive === true) return;
    if (p.table.waiting > 0 || p.table.openHandles > 0) log.info(`TAKEBACK: the calls that were on their way to dead router '${name}' run here`, { router: name, waiting: p.table.waiting, handles: p.table.openHandles });
    void p.table.switchTo({ kind: 'local', ops });
  }

  /** The takebacks whose open failed, each at its time (back-off); one that opens is served here from then on. */
  private async retryPending(): Promise<void> {
    const { routes, router } = this.opts;
    for (const [p, t] of [...this.pending]) {
      if (Date.now() < t.nextAt) continue;
      if (t.heldSince === null) {
        t.heldSince = Date.now();
        await routes.hold(p, `vDisk ${p} is taken back from ${t.from} (try ${t.tries + 1})`);
      }
      if (await this.openHere(p, t.id, t.tag, t.from, t.heldSince)) log.warn(`TAKEBACK: vDisk ${p} taken back from ${t.from}: served here under owner tag ${t.tag} (router '${router}')`, { path: p, from: t.from, tag: t.tag });
    }
  }

  private async poll(): Promise<void> {
    const { session, vpool, router } = this.opts;
    const etcd = session.registry.client;
    if (this.pending.size > 0) await this.retryPending();
    if (this.served.size > 0) await this.checkDelegates();
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
      if (cur.undone === true || await this.isGone(cur)) {
        // its delegate is dead: nobody to hand it back; the registry's rule decides (unsafe: only with --force)
        const why = await this.takeBack(req.path, cur, true, req.force === true);
        if (why !== null) throw new Error(`${why}${req.force === true || this.pending.has(req.path) ? '' : '. `vpoolfs move FILE --to ' + router + ' --force` takes it back anyway, losing those writes'}`);
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

  /** The delegate link to router `rec` (connected again when it broke). */
  private async peer(rec: RouterRecord): Promise<Peer> {
    if (rec.delegateAddress === undefined) throw new Error(`router '${rec.name}' serves no delegate link (its registration has no delegateAddress)`);
    let p = this.peers.get(rec.name);
    if (p !== undefined && p.address !== rec.delegateAddress) {
      p.client?.close('the router moved its delegate link');
      p.client = null;
      p.address = rec.delegateAddress;
    }
    if (p === undefined) {
      const table: FollowerTable = new FollowerTable(this.opts.waitMs, () => void this.reconnect(rec.name));
      p = { router: rec.name, address: rec.delegateAddress, client: null, table };
      this.peers.set(rec.name, p);
    }
    if (p.client === null || !p.client.alive) await this.connect(p);
    return p;
  }

  private async connect(p: Peer): Promise<void> {
    const { vpool, router, secret } = this.opts;
    const c = await LinkClient.connect({ address: p.address, secret, vpool: vpool.name, router });
    p.client = c;
    c.onClose((why) => p.table.lost(c, why));
    await p.table.switchTo({ kind: 'remote', client: c });
  }

  /** The delegate link broke: connect again (to its current address) while the router is registered. */
  private async reconnect(name: string): Promise<void> {
    const p = this.peers.get(name);
    if (p === undefined) return;
    for (let i = 0; i < 40 && this.peers.get(name) === p; i++) {
      const v = await this.opts.session.registry.client.get(routerKey(name)).string().catch(() => null);
      const rec = v === null ? null : (JSON.parse(v) as RouterRecord);
      if (rec?.delegateAddress !== undefined) {
        p.address = rec.delegateAddress;
        try {
          await this.connect(p);
          return;
        } catch {
          // tried again below
        }
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Hands the vDisk at `p` to router `to`; returns the new owner tag. */
  private async hand(p: string, to: string): Promise<number> {
    const { session, vpool, router, routes } = this.opts;
    const etcd = session.registry.client;
    const target = await delegationTarget(etcd, vpool.name, router, to);
    const peer = await this.peer(target);
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
      const opened = await this.openHere(p, id, session.tag, `the handover to router '${to}' that did not hold`, Date.now());
      throw new Error(`the handover transaction did not hold (router '${to}' went away, or the vPool or the vDisk's record changed meanwhile): ${p} stays here${opened ? '' : ' (its open here failed: tried again until it opens)'}`);
    }
    const r = await (peer.client === null ? Promise.resolve({ code: E.EIO }) : peer.client.call('vdiskServe', [id, p, tag]).catch(() => ({ code: E.EIO })));
    if (r.code < 0) {
      await session.holdRecords();
      const back = await returnVDisk(etcd, vpool.name, id, { router, tag: session.tag }, { router: to, tag }).finally(() => session.releaseRecords());
      if (back !== null) {
        await this.openHere(p, id, back, `router '${to}', which did not take it`, Date.now());
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
    if (!await this.openHere(p, d.id, tag, `router '${d.router}'`, heldSince)) throw new Error(`router '${d.router}' handed ${p} back but it could not be opened here yet (${this.pending.get(p)?.cause}): tried again until it opens`);
  }
}
