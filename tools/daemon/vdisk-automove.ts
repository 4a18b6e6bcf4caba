/**
 * The automatic move at the end of a live migration, decided per vDisk (docs/cluster.md, "Moves" and "Ownership
 * per vDisk"). While this router owns the vPool it counts, every quarter second, the open handles of each vDisk
 * (by path) per router:
 *
 *   this router        its own mount's handles (its RoutedTable: wherever the vDisk is served);
 *   each follower      the handles it holds through this router's link (router-link/server.ts holdersByPath: the
 *                      follower names itself with an Ident);
 *   the delegate       for a vDisk delegated to router B, B's own handles of it, and those other routers hold
 *                      through B's delegate link directly: asked of B over its delegate link (`vdiskHolders`,
 *                      answered by tools/daemon/delegate-side.ts from its tables, the asker's own connection left
 *                      out — this router counts what it forwards itself).
 *
 * Why ask the delegate: B's mount serves the vDisk from B's own handlers, so its opens never reach this router; a
 * registry record per open would cost etcd writes per open, an answer over the link already there costs one small
 * call per delegated vDisk per poll, and is as fresh as the poll.
 *
 * The rule, per vDisk: when the router serving it (this router, or its delegate) has held no handle of it for
 * `afterMs` without a break, and exactly one other router holds it open, this router asks the same per-vDisk move
 * as `vpoolfs move FILE --to ROUTER` (registry/vdisk-move.ts; run by tools/daemon/vdisk-move.ts): to a follower
 * (a delegation) or back to this router (the vPool's owner). The ping-pong guard, per vDisk: no automatic move
 * within `holdMs` of the vDisk last changing router (or of this router becoming the vPool's owner; an automatic
 * request that did not move it counts as a change too: tried again after holdMs). A clone or a vDisk with clones
 * stays (it cannot be delegated: its family reads each other's data), logged once.
 */
import { isCode } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { requestVDiskMove } from '../../registry/vdisk-move.js';
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import { LinkClient } from '../../router-link/client.js';
import type { VPool } from '../../volume/types.js';
import type { AutoMove } from './handover.js';

const log = logger('move');

export const AUTOMOVE_POLL_MS = 250;
/** A delegate's answer to `vdiskHolders` counts as unknown past this (that vDisk is not judged this poll). */
const ASK_MS = 2000;

/** Open handles per router name. */
export type Holders = Map<string, number>;

/**
 * A delegate's answer to `vdiskHolders(path, asker)` (tools/daemon/delegate-side.ts): its own handles of the
 * vDisk (`own`, its mount's tables) under its name, plus those of the routers connected to its delegate link but
 * the asker (which counts what it forwards there itself). JSON: {router: count}.
 */
export function delegateHolders(me: string, own: number, link: Holders | undefined, asker: string): string {
  const out: Record<string, number> = {};
  if (own > 0) out[me] = own;
  for (const [r, n] of link ?? []) if (r !== asker && n > 0) out[r] = (out[r] ?? 0) + n;
  return JSON.stringify(out);
}

export interface VDiskAutoMoveOptions {
  session: RouterSession;
  vpool: VPool;
  /** This router's name (the vPool's owner). */
  router: string;
  auto: AutoMove;
  /** When this router became the vPool's owner (the first guard of every vDisk). */
  ownedSince: number;
  /** This router's own mount's open handles per path. */
  ownHandles: () => Map<string, number>;
  /** The handles of the routers connected to this router's link, per path, per router. */
  linkHolders: () => Map<string, Holders>;
  /** vDisks delegated now: path → the router serving it (tools/daemon/vdisk-move.ts VDiskMover.delegated). */
  delegated: () => Map<string, string>;
  secret?: Buffer;
}

interface PerVDisk {
  /** The router serving it, as last seen. */
  server: string;
  /** The last poll at which its server held a handle of it (or when it started serving it). */
  lastServerUse: number;
  /** When it last changed router (or an automatic move of it was asked): the ping-pong guard. */
  changedAt: number;
  /** An automatic move of it was asked since its last change (the guard then says nothing: the move is on its way). */
  asked: boolean;
}

export class VDiskAutoMove {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly disks = new Map<string, PerVDisk>();
  /** Delegate links used to ask `vdiskHolders`, per router. */
  private readonly links = new Map<string, LinkClient>();
  /** What was last said per slot (a reason not to move that lasts is logged once; bounded by slots: vDisks, routers). */
  private readonly said = new Map<string, string>();

  constructor(private readonly opts: VDiskAutoMoveOptions) {}

  start(): void {
    if (!this.opts.auto.enabled || this.timer !== null) return;
    this.timer = setInterval(() => {
      this.running ??= this.poll().catch((err: unknown) => this.once('etcd', (err as Error).message, 'MOVE: the automatic move per vDisk could not ask (etcd unreachable?): tried again', { error: String((err as Error).message ?? err) }))
        .finally(() => { this.running = null; });
    }, AUTOMOVE_POLL_MS);
    this.timer.unref();
  }

  /** Stops polling (a running poll finishes first) and closes its delegate links. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    for (const c of this.links.values()) c.close('the automatic move per vDisk stops');
    this.links.clear();
  }

  private once(slot: string, key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.said.get(slot) === key) return;
    this.said.set(slot, key);
    log.info(msg, { vpool: this.opts.vpool.name, ...fields });
  }

  /** Every vDisk with an open handle anywhere, or delegated: path → handles per router (null: unknown now). */
  private async count(): Promise<Map<string, Holders | null>> {
    const { router } = this.opts;
    const out = new Map<string, Holders | null>();
    const add = (p: string, r: string, n: number) => {
      if (n <= 0) return;
      let h = out.get(p);
      if (h === null) return;
      if (h === undefined) out.set(p, (h = new Map()));
      h.set(r, (h.get(r) ?? 0) + n);
    };
    for (const [p, n] of this.opts.ownHandles()) add(p, router, n);
    for (const [p, per] of this.opts.linkHolders()) for (const [r, n] of per) add(p, r, n);
    for (const [p, to] of this.opts.delegated()) {
      if (!out.has(p)) out.set(p, new Map());
      const theirs = await this.ask(to, p);
      if (theirs === null) out.set(p, null);
      else for (const [r, n] of theirs) add(p, r, n);
    }
    return out;
  }

  /** The delegate `to`'s count of `p` (its own, and routers reaching it directly), or null if it did not answer. */
  private async ask(to: string, p: string): Promise<Holders | null> {
    try {
      let c = this.links.get(to);
      if (c === undefined || !c.alive) {
        const v = await this.opts.session.registry.client.get(routerKey(to)).string();
        const addr = v === null ? undefined : (JSON.parse(v) as RouterRecord).delegateAddress;
        if (addr === undefined) return null;
        c = await LinkClient.connect({ address: addr, secret: this.opts.secret, vpool: this.opts.vpool.name, router: this.opts.router });
        this.links.set(to, c);
      }
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        c.call('vdiskHolders', [p, this.opts.router]),
        new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), ASK_MS); }),
      ]).finally(() => clearTimeout(timer));
      if (r === null || r.code < 0 || typeof r.values[0] !== 'string') {
        this.once(`ask ${to}`, `${r?.code ?? 'timeout'}`, `MOVE: router '${to}' did not say who holds vDisk ${p} open (${r === null ? 'no answer in time' : `errno ${-r.code}`}): not judged until it does`, { path: p, to });
        return null;
      }
      this.said.delete(`ask ${to}`); // (a later failure is said again)
      return new Map(Object.entries(JSON.parse(r.values[0]) as Record<string, number>));
    } catch (err) {
      this.once(`ask ${to}`, (err as Error).message, `MOVE: router '${to}' could not be asked who holds vDisk ${p} open: ${(err as Error).message}`, { path: p, to });
      return null;
    }
  }

  private async poll(): Promise<void> {
    const { router, auto, ownedSince } = this.opts;
    const now = Date.now();
    const delegated = this.opts.delegated();
    // a router that lost the vPool decides nothing (its requests would go to the new owner, from stale counts)
    if (this.opts.session.lost !== null) return;
    const counts = await this.count();
    if (this.timer === null) return;
    // a vDisk nobody holds is forgotten, once its guard has run out (a later open starts its afterMs afresh)
    for (const [p, d] of [...this.disks]) if (!counts.has(p) && now - d.changedAt >= auto.holdMs) this.disks.delete(p);
    let asked = false;
    for (const [p, holders] of counts) {
      const server = delegated.get(p) ?? router;
      let d = this.disks.get(p);
      if (d === undefined) this.disks.set(p, (d = { server, lastServerUse: now, changedAt: ownedSince, asked: false }));
      if (d.server !== server) {
        d.server = server;
        d.changedAt = now;
        d.lastServerUse = now;
        d.asked = false;
      }
      if (holders === null) continue;
      if ((holders.get(server) ?? 0) > 0) {
        d.lastServerUse = now;
        continue;
      }
      const others = [...holders.keys()];
      if (others.length !== 1 || others[0] === '' || asked) continue;
      const to = others[0];
      if (now - d.lastServerUse < auto.afterMs) continue;
      if (now - d.changedAt < auto.holdMs) {
        if (!d.asked) this.once(`guard ${p}`, `${to} ${d.changedAt}`, `MOVE: not moving vDisk ${p} to router '${to}' yet: it changed router ${now - d.changedAt} ms ago (autoMoveHoldMs ${auto.holdMs}: the ping-pong guard)`, { path: p, to });
        continue;
      }
      if (server === router && this.isFamily(p)) continue;
      asked = true; // one vDisk move at a time per vPool (registry/vdisk-move.ts)
      if (await this.request(p, server, to, now - d.lastServerUse)) {
        d.changedAt = Date.now();
        d.asked = true;
      }
    }
    this.said.delete('etcd'); // (etcd answered this poll: a later failure is said again)
  }

  /** A clone or a vDisk with clones is not delegated (VPool.handOverVDisk): it stays here, said once. */
  private isFamily(p: string): boolean {
    try {
      const info = this.opts.vpool.vdisk(p).info();
      if (info.parent === null && info.clones.length === 0) return false;
      this.once(`family ${p}`, 'family', `MOVE: vDisk ${p} stays on router '${this.opts.router}' although only another router holds it open: it is ${info.parent !== null ? `a clone of ${info.parent.path}` : `the parent of clones (${info.clones.join(', ')})`}, and a clone's family is served by the vPool's owner`, { path: p });
      return true;
    } catch {
      return false; // (gone meanwhile, or not a vDisk here: the move request says why, if it is asked)
    }
  }

  /** Asks the per-vDisk move of `p` to `to`; false when it could not be asked now (a move running: asked again). */
  private async request(p: string, server: string, to: string, idleMs: number): Promise<boolean> {
    const { session, vpool, router } = this.opts;
    try {
      await requestVDiskMove(session.registry.client, vpool.name, p, to);
      log.info(`MOVE: asked for an automatic move of vDisk ${p} to router '${to}': router '${server}', which serves it, has held it open for none of the last ${idleMs} ms and only router '${to}' holds it open (the end of a live migration)`, { vpool: vpool.name, path: p, from: server, to, owner: router });
      return true;
    } catch (err) {
      if (isCode(err, 'BUSY') && /already running/.test((err as Error).message)) return false;
      if (isCode(err, 'BUSY') || isCode(err, 'INVALID') || isCode(err, 'NOT_FOUND')) {
        this.once(`refused ${p}`, `${to} ${(err as Error).message}`, `MOVE: no automatic move of vDisk ${p}: ${(err as Error).message}`, { path: p, to });
        return true; // not asked again within holdMs
      }
      throw err;
    }
  }
}
