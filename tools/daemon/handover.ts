/**
 * The owner's side of a planned move (docs/cluster.md, "Moves"): while this router owns the vPool, a watch reads
 * `/vpoolfs/vpools/<vpool>/move` (registry/move.ts) every quarter second and runs the handover asked of it, one
 * at a time. It also asks for a move itself at the end of a live migration (`autoMove`): when this router's own
 * mount has held no open file of the vPool for `afterMs` and exactly one follower holds files open through its
 * router link, the vPool moves to that follower.
 *
 * The ping-pong guard: an automatic move needs (1) no open file on the owner's own mount for `afterMs` without
 * a break, (2) exactly one other router holding files open, and (3) at least `holdMs` since this router became
 * the owner. A VM that migrated keeps its files open on its new router, so (1) fails there and the vPool stays;
 * two VMs of one vPool running on two routers fail (2) and nothing moves (ownership is per vPool: one owner for
 * every vDisk of it); and two routers alternately opening files move the vPool at most once per `holdMs`.
 *
 * The steps of the handover itself are the mount's (tools/commands/mount-cmd.ts, `handOver`): they touch the
 * mount, the vPool and the router link.
 */
import { isCode } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { readMove, requestMove, type MoveRequest } from '../../registry/move.js';
import type { RouterSession } from '../../registry/router-session.js';

const log = logger('move');

export const HANDOVER_POLL_MS = 250;

export interface AutoMove {
  enabled: boolean;
  /** How long the owner's own mount must hold no open file (ms). */
  afterMs: number;
  /** No automatic move within this long of becoming the owner (ms). */
  holdMs: number;
}

export interface HandoverWatchOptions {
  session: RouterSession;
  vpool: string;
  router: string;
  auto: AutoMove;
  /** When this router became the owner (the ping-pong guard). */
  ownedSince: number;
  /** Open files of this router's own mount. */
  ownHandles: () => number;
  /** Open files each follower holds through the router link, by router name. */
  holders: () => Map<string, number>;
  /** Runs the handover asked by `req` (the mount's steps); resolves when it is over, either way. */
  handOver: (req: MoveRequest) => Promise<void>;
}

export class HandoverWatch {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private lastOwnUse: number;
  private said = '';

  constructor(private readonly opts: HandoverWatchOptions) {
    this.lastOwnUse = opts.ownedSince;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), HANDOVER_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private say(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.said === key) return;
    this.said = key;
    log.info(msg, { vpool: this.opts.vpool, ...fields });
  }

  private async tick(): Promise<void> {
    if (this.busy || this.timer === null) return;
    this.busy = true;
    try {
      const { session, vpool, router } = this.opts;
      const client = session.registry.client;
      const req = await readMove(client, vpool);
      if (this.timer === null) return;
      if (req !== null && req.from === router && req.tag === session.tag) {
        this.stop();
        await this.opts.handOver(req);
        return;
      }
      this.autoMove(Date.now());
      const to = this.candidate;
      if (to !== null) {
        this.candidate = null;
        log.info(`MOVE: asking for an automatic move of vPool '${vpool}' to router '${to}': this router's mount has had no open file for ${this.opts.auto.afterMs} ms and only router '${to}' holds files open (the end of a live migration)`, { vpool, to });
        await requestMove(client, vpool, to, 'open handles').catch((err: unknown) => {
          if (isCode(err, 'BUSY') || isCode(err, 'INVALID') || isCode(err, 'NOT_FOUND')) this.say(`auto ${(err as Error).message}`, `MOVE: no automatic move: ${(err as Error).message}`, { to });
          else throw err;
        });
      }
    } catch (err) {
      this.say(`etcd ${(err as Error).message}`, 'reading the registry for moves failed (etcd unreachable?): tried again', { error: String((err as Error).message ?? err) });
    } finally {
      this.busy = false;
    }
  }

  /** The follower the vPool should move to by itself, if any (see the header). */
  private candidate: string | null = null;

  private autoMove(now: number): void {
    const { auto } = this.opts;
    if (!auto.enabled) return;
    if (this.opts.ownHandles() > 0) {
      this.lastOwnUse = now;
      return;
    }
    const holders = [...this.opts.holders().keys()];
    if (holders.length !== 1 || holders[0] === '' || holders[0] === this.opts.router) return;
    if (now - this.lastOwnUse < auto.afterMs) return;
    if (now - this.opts.ownedSince < auto.holdMs) {
      this.say(`guard ${holders[0]}`, `MOVE: not moving to router '${holders[0]}' yet: this router became the owner ${now - this.opts.ownedSince} ms ago (autoMoveHoldMs ${auto.holdMs}: the ping-pong guard)`, { to: holders[0] });
      return;
    }
    this.candidate = holders[0];
  }
}
