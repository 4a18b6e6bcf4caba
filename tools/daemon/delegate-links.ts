/**
 * The vPool owner's delegate links (docs/cluster.md, "Ownership per vDisk"): one per router it delegated a vDisk to,
 * a LinkClient to that router's delegate link (tools/daemon/delegate-side.ts) behind a FollowerTable that the
 * owner's routes send the vDisk's per-file calls to (router-link/vdisk-routes.ts). A link that breaks is connected
 * again, to the router's current address, while the router is registered; its table's calls wait meanwhile.
 * The map of links is the mover's (tools/daemon/vdisk-move.ts VDiskMover.peers): this class connects them.
 */
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import { LinkClient } from '../../router-link/client.js';
import { FollowerTable } from '../../router-link/follower-table.js';

/** How long the link waits between two tries of a reconnect. */
const RECONNECT_MS = 250;

/** The delegate link to one router. */
export interface Peer {
  router: string;
  address: string;
  client: LinkClient | null;
  table: FollowerTable;
}

export interface DelegateLinksOptions {
  session: RouterSession;
  /** The vPool's name and this router's, the link's secret: what the link's hello carries. */
  vpool: string;
  router: string;
  secret?: Buffer;
  waitMs: number;
}

export class DelegateLinks {
  constructor(private readonly peers: Map<string, Peer>, private readonly opts: DelegateLinksOptions) {}

  /** The delegate link to router `rec` (connected again when it broke). */
  async peer(rec: RouterRecord): Promise<Peer> {
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

  /** The delegate link broke: connect again (to its current address) while the router is registered. */
  async reconnect(name: string): Promise<void> {
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
      await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  }

  /** Every link closed and forgotten (the vDisks all taken back). */
  closeAll(why: string): void {
    for (const peer of this.peers.values()) {
      peer.client?.close(why);
      peer.table.close();
    }
    this.peers.clear();
  }

  private async connect(p: Peer): Promise<void> {
    const { vpool, router, secret } = this.opts;
    const c = await LinkClient.connect({ address: p.address, secret, vpool, router });
    p.client = c;
    c.onClose((why) => p.table.lost(c, why));
    await p.table.switchTo({ kind: 'remote', client: c });
  }
}
