/**
 * A follower's direct routes to the vPool's delegated vDisks (docs/cluster.md, "Ownership per vDisk"): while this
 * router follows the vPool's owner, the per-file calls of a vDisk the owner delegated to ANOTHER router go straight
 * to that router's delegate link (`delegateAddress` in its registration) instead of through the owner (two hops).
 * Routed the same way as on the owner — this router's VDiskRoutes (router-link/vdisk-routes.ts setDirect), so the
 * tree's part of a getattr still comes from the owner and namespace calls still go there — but only for the calls
 * of this router's own mount: a call that came over a router link goes at most one hop further, to the owner.
 *
 * Learnt from the registry: every change of a vDisk's owner (a delegation, a return, a takeover) bumps the
 * cluster-wide owner tag (registry/vdisk-delegation.ts), so each poll reads only that one key, and the vPool's
 * vDisk records (`delegatedVDisks`) only when it changed (or a route is still to be made).
 *
 * A stale route is never wrong, only slower: a delegate's link forwards the calls of a vDisk it no longer serves to
 * the vPool's owner (its own table), and the owner forwards a delegated vDisk's calls to its delegate; during a
 * move the owner holds the path's calls. So a route is made once the record names the delegate (the delegate may
 * still be opening it: its link forwards to the owner, which holds the call until then) and dropped once it does
 * not. A path this router serves itself (it is the delegate: tools/daemon/delegate-side.ts) stays its own. A
 * broken delegate link falls back to the owner at once: the calls in flight there run again through the vPool
 * owner's table (open files re-opened by path: router-link/follower-table.ts), and the paths are routed to the
 * owner until the delegate answers again.
 */
import type { Handlers } from '../../fuse/handlers.js';
import { OWNER_TAG, routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import { delegatedVDisks } from '../../registry/vdisk-delegation.js';
import { LinkClient } from '../../router-link/client.js';
import { FollowerTable } from '../../router-link/follower-table.js';
import type { VDiskRoutes } from '../../router-link/vdisk-routes.js';
import { logger } from '../../util/log.js';

const log = logger('follower');
const POLL_MS = 250;

export interface DirectRoutesOptions {
  session: RouterSession;
  vpool: string;
  router: string;
  routes: VDiskRoutes;
  /** This router's table of the vPool (forwarding to the owner): where a broken delegate link falls back to. */
  base: Handlers;
  secret?: Buffer;
  waitMs: number;
}

interface Peer {
  router: string;
  address: string;
  client: LinkClient;
  table: FollowerTable;
  /** `table`'s handlers, counting the calls (what the routes point to). */
  ops: Handlers;
  broken: boolean;
}

export class DirectRoutes {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  /** The owner tag the routes were made for ('' until the first read; reset to read again). */
  private seenTag = '';
  private readonly peers = new Map<string, Peer>();
  /** path → the delegate it is routed to here. */
  private readonly mine = new Map<string, Peer>();
  /** What was logged of delegates that did not answer (once each). */
  private readonly warned = new Set<string>();
  /** Calls this router sent straight to a delegate (not through the owner): opens, reads, writes… (metrics, tests). */
  direct = 0;

  private constructor(private readonly opts: DirectRoutesOptions) {}

  static start(opts: DirectRoutesOptions): DirectRoutes {
    const d = new DirectRoutes(opts);
    d.timer = setInterval(() => d.poll(), POLL_MS).unref();
    d.poll();
    return d;
  }

  /** This router stops following (it owns the vPool now, or stops): every path routed here goes back to the default table. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    await this.running;
    for (const p of [...this.mine.keys()]) this.unroute(p, 'this router stops following the vPool\'s owner');
    for (const peer of this.peers.values()) await this.retire(peer, 'this router stops following the vPool\'s owner');
    this.peers.clear();
  }

  private poll(): void {
    if (this.stopped) return;
    this.running ??= this.pollOnce()
      .catch((err: unknown) => { log.warn('reading the delegated vDisks failed (etcd unreachable?): their calls go through the vPool\'s owner meanwhile', { error: String((err as Error).message ?? err) }); })
      .finally(() => { this.running = null; });
  }

  private async pollOnce(): Promise<void> {
    const { session, vpool, router, routes } = this.opts;
    const etcd = session.registry.client;
    const tag = (await etcd.get(OWNER_TAG).string()) ?? '0';
    if (tag === this.seenTag || this.stopped) return;
    const want = new Map<string, string>();
    for (const rec of (await delegatedVDisks(etcd, vpool)).values()) {
      if (rec.path !== undefined && rec.router !== router) want.set(rec.path, rec.router);
    }
    if (this.stopped) return;
    let complete = true;
    for (const [p, peer] of [...this.mine]) if (want.get(p) !== peer.router) this.unroute(p, want.has(p) ? `router '${want.get(p)}' serves it now` : 'the vPool\'s owner serves it again');
    for (const [p, r] of want) {
      if (this.mine.get(p)?.router === r) continue;
      const peer = await this.peer(r).catch((err: unknown) => {
        const error = String((err as Error).message ?? err);
        if (!this.warned.has(`${p} ${r} ${error}`)) {
          this.warned.add(`${p} ${r} ${error}`);
          log.warn(`vDisk ${p} is served by router '${r}': its calls go through the vPool's owner until that router's delegate link answers`, { path: p, router: r, error });
        }
        return null;
      });
      if (peer === null) {
        complete = false;
        continue;
      }
      if (this.stopped) continue;
      routes.setDirect(p, peer.ops);
      this.mine.set(p, peer);
      this.warned.clear();
      log.info(`DIRECT: vDisk ${p}'s calls go straight to router '${r}', its delegate, not through the vPool's owner`, { vpool, path: p, router: r, address: peer.address });
    }
    // read again at the next poll until every delegated vDisk is routed
    this.seenTag = complete ? tag : '';
  }

  private unroute(p: string, why: string): void {
    const peer = this.mine.get(p);
    this.mine.delete(p);
    if (peer !== undefined && this.opts.routes.direct(p) === peer.ops) this.opts.routes.setDirect(p, null);
    log.info(`DIRECT: vDisk ${p}'s calls go to the vPool's owner again (${why})`, { vpool: this.opts.vpool, path: p, router: peer?.router });
  }

  /** The delegate link to router `name`, connected (a new one after a break). */
  private async peer(name: string): Promise<Peer> {
    const { session, vpool, router, secret, waitMs, base } = this.opts;
    const raw = await session.registry.client.get(routerKey(name)).string();
    const rec = raw === null ? null : (JSON.parse(raw) as RouterRecord);
    if (rec === null) throw new Error(`router '${name}' has no live registration`);
    if (rec.delegateAddress === undefined) throw new Error(`router '${name}' serves no delegate link`);
    const old = this.peers.get(name);
    if (old !== undefined && !old.broken && old.client.alive && old.address === rec.delegateAddress) return old;
    if (old !== undefined) await this.retire(old, `its delegate link is now at ${rec.delegateAddress}`);
    const client = await LinkClient.connect({ address: rec.delegateAddress, secret, vpool, router });
    const table = new FollowerTable(waitMs, () => undefined);
    const ops: Handlers = {};
    for (const [op, fn] of Object.entries(table.ops)) ops[op] = (...args: unknown[]) => { this.direct++; fn(...args); };
    const peer: Peer = { router: name, address: rec.delegateAddress, client, table, ops, broken: false };
    client.onClose((why) => {
      table.lost(client, why);
      void this.fallBack(peer, base, why);
    });
    await table.switchTo({ kind: 'remote', client });
    this.peers.set(name, peer);
    return peer;
  }

  /** The delegate link broke: its calls run through the vPool's owner, and its paths are routed there until it answers. */
  private async fallBack(peer: Peer, base: Handlers, why: string): Promise<void> {
    if (peer.broken) return;
    peer.broken = true;
    log.warn(`DIRECT: the delegate link of router '${peer.router}' broke (${why}): its vDisks' calls go through the vPool's owner`, { router: peer.router });
    await peer.table.switchTo({ kind: 'local', ops: base });
    this.unrouteAll(peer, `router '${peer.router}''s delegate link broke`);
    this.seenTag = '';
  }

  /** Done with `peer`: its paths go to the vPool's owner, its calls in flight run again there, its link closes. */
  private async retire(peer: Peer, why: string): Promise<void> {
    peer.broken = true;
    if (this.peers.get(peer.router) === peer) this.peers.delete(peer.router);
    this.unrouteAll(peer, why);
    await peer.table.switchTo({ kind: 'local', ops: this.opts.base });
    peer.client.close(why);
  }

  private unrouteAll(peer: Peer, why: string): void {
    for (const [p, q] of [...this.mine]) if (q === peer) this.unroute(p, why);
  }
}
