/**
 * The vPool owner's takebacks of a delegated vDisk without asking its delegate (docs/cluster.md, "Ownership per
 * vDisk"; the moves themselves: tools/daemon/vdisk-move.ts):
 *
 *   from a dead delegate  (its registration gone, or re-registered under another lease) the registry's rule decides:
 *                         safe record → returnVDisk fromDead and takeBackVDisk (the DTL recovery); else refused
 *                         (logged once, tried again each poll), and only `move FILE --to <owner> --force` takes it
 *                         back. The calls that were on their way to the dead delegate then run here (its link table
 *                         switched to this router's own handlers: deadLinkServesHere).
 *   from this router      it served it as a delegate before it took the vPool (its delegate side closed it).
 *   an undone takeback    the vPool's former owner returned it in the registry but could not open it.
 *
 * Each poll watches the delegates' registrations (checkDelegates) the same way.
 * A takeback whose return held in the registry but whose open here failed (the backend refusing at that moment:
 * takeBackVDisk) is tried again with a back-off (retryPending, `TAKEBACK: … trying again` in the log with the
 * cause each time) until it opens: its calls wait meanwhile while that stays within half of waitMs, then answer
 * BUSY with the cause — never EIO; its record stays this router's with `delegatedBy` (returnVDisk), so that the
 * session keeps it and a restart, a takeover or a release hands it on as a takeback still to do (giveUpPending).
 */
import type { Handlers } from '../../fuse/handlers.js';
import { returnVDisk } from '../../registry/vdisk-delegation.js';
import { isCode } from '../../util/errors.js';
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import type { VDiskRoutes } from '../../router-link/vdisk-routes.js';
import { logger } from '../../util/log.js';
import type { VPool } from '../../volume/types.js';
import type { Peer } from './delegate-links.js';

const log = logger('cli');
/** The back-off of a takeback whose open failed: from RETRY_MIN_MS, doubled each try, at most RETRY_MAX_MS. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

/** A vDisk delegated now: its id, the delegate serving it, under owner tag `tag` and that router's lease. */
export interface Delegation {
  id: string;
  router: string;
  tag: number;
  lease?: string;
  /** A takeback the vPool's former owner recorded but could not open (its record: delegatedBy === router). */
  undone?: boolean;
}

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

export interface TakebackOptions {
  session: RouterSession;
  vpool: VPool;
  router: string;
  routes: VDiskRoutes;
  waitMs: number;
  /**
   * This router's own handlers (the vPool's): a dead delegate's link table is switched to them once its vDisk is
   * taken back, so that the calls that were on their way to it run here (see takeBack).
   */
  ownOps?: () => Handlers | undefined;
}

export class Takebacks {
  /** id → why its takeback from a dead delegate was refused (logged once, tried again each poll). */
  private readonly refused = new Map<string, string>();
  /** path → a takeback whose open here failed, tried again (retryPending). */
  private readonly pending = new Map<string, PendingTakeback>();

  /** `served` and `peers`: the mover's vDisks delegated now (path →) and its delegate links (router →). */
  constructor(private readonly opts: TakebackOptions, private readonly served: Map<string, Delegation>, private readonly peers: ReadonlyMap<string, Peer>) {}

  /** Why the takeback of `p` is still pending (its open here failed), or undefined. */
  pendingCause(p: string): string | undefined {
    return this.pending.get(p)?.cause;
  }

  /** Each poll: the pending takebacks at their time, then the delegates' registrations. */
  async poll(): Promise<void> {
    if (this.pending.size > 0) await this.retryPending();
    if (this.served.size > 0) await this.checkDelegates();
  }

  /**
   * At a stop: each pending takeback tried once more; one still failing stays in the registry as one to do (its
   * record: this router's, delegatedBy): the release keeps it, and the next owner of the vPool takes it back.
   */
  async giveUpPending(): Promise<void> {
    for (const [p, t] of [...this.pending]) {
      if (!await this.openHere(p, t.id, t.tag, t.from, Date.now())) {
        log.error(`TAKEBACK: vDisk ${p} is still not open here at this stop (${t.cause}): the registry keeps it as a takeback to do for the vPool's next owner`, { path: p, tag: t.tag });
        this.pending.delete(p);
        // its calls go where this router's table sends them now: BUSY here while stopping, the next owner after a move
        this.opts.routes.set(p, null);
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
  async isGone(d: { router: string; lease?: string }): Promise<boolean> {
    const v = await this.opts.session.registry.client.get(routerKey(d.router)).string();
    return v === null || (d.lease !== undefined && (JSON.parse(v) as RouterRecord).lease !== d.lease);
  }

  /**
   * Takes `p` back from its delegate `d` without asking it (dead, or this router itself, closed already).
   * Null when it is served here now (or pending: the message says so), else why not.
   */
  async takeBack(p: string, d: { id: string; router: string; tag: number }, fromDead: boolean, force = false): Promise<string | null> {
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
  async openHere(p: string, id: string, tag: number, from: string, heldSince: number): Promise<boolean> {
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
}
