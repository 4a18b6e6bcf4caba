/**
 * Prometheus gauges of the registry and the router link (docs/cluster.md), on the mount's `--metrics` endpoint:
 * what this router does for its vPool, how often ownership changed here, and the link's traffic from both ends.
 * Counts are since the daemon started (gauges read at scrape time, like the scrub counts in metrics.ts).
 *
 *   vpoolfs_registry_role{role}          1 for what this router does now: owner, follower (0 for the others)
 *   vpoolfs_registry_takeovers           vPools this router took over from a dead or stopped owner
 *   vpoolfs_registry_moves{direction}    planned moves (vpoolfs move, automatic): `in` to this router, `out` from it
 *   vpoolfs_link_calls_forwarded         calls this router's mount sent to the owner over the router link
 *   vpoolfs_link_calls_direct            calls this router's mount sent straight to a delegated vDisk's router
 *   vpoolfs_link_calls_served            calls followers sent this router while it owned the vPool
 *   vpoolfs_link_connections             followers connected to this router's link now
 *   vpoolfs_link_connections_accepted    follower connections accepted since start
 *   vpoolfs_link_connected               1 while this router (a follower) is connected to the owner's link
 *   vpoolfs_link_waiting_calls           calls of this router's mount waiting for an owner (a takeover, a move)
 */
import { Gauge, type Registry } from 'prom-client';
import type { Mounted } from '../../fuse/mount.js';
import type { VPool } from '../../volume/types.js';
import type { LinkServer } from '../../router-link/server.js';
import type { FollowerTable } from '../../router-link/follower-table.js';

export type Role = 'owner' | 'follower' | 'standby';

export class ClusterStats {
  role: Role | null = null;
  takeovers = 0;
  movesIn = 0;
  movesOut = 0;
  /** What this router serves while it owns the vPool. */
  current?: { vpool: VPool; mounted: Mounted; link?: LinkServer };
  /** A registry mount's table (forwarded and waiting calls). */
  table?: FollowerTable;
  /** Whether this router's mount is connected to the owner's link now. */
  linked: () => boolean = () => false;
  /** Calls this router's mount sent straight to a delegated vDisk's router, not through the owner (tools/daemon/direct-routes.ts). */
  direct: () => number = () => 0;
  private readonly links: LinkServer[] = [];

  /** Each link server this router ran (one per time it owned the vPool): their counts add up. */
  addLink(l: LinkServer): void {
    this.links.push(l);
  }

  get served(): number {
    return this.links.reduce((n, l) => n + l.calls, 0);
  }

  get accepted(): number {
    return this.links.reduce((n, l) => n + l.accepted, 0);
  }

  get connections(): number {
    return this.current?.link?.connections ?? 0;
  }
}

export function registerClusterMetrics(registry: Registry, s: ClusterStats): void {
  const g = (name: string, help: string, value: () => number): Gauge =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(value()); } });
  new Gauge({
    name: 'vpoolfs_registry_role', help: 'What this router does for its vPool now (1 for its role)', labelNames: ['role'], registers: [registry],
    collect() {
      for (const r of ['owner', 'follower', 'standby'] as const) this.set({ role: r }, s.role === r ? 1 : 0);
    },
  });
  g('vpoolfs_registry_takeovers', 'vPools this router took over from a dead or stopped owner since start', () => s.takeovers);
  new Gauge({
    name: 'vpoolfs_registry_moves', help: 'Planned moves of the vPool since start: in (to this router), out (from it)', labelNames: ['direction'], registers: [registry],
    collect() {
      this.set({ direction: 'in' }, s.movesIn);
      this.set({ direction: 'out' }, s.movesOut);
    },
  });
  g('vpoolfs_link_calls_forwarded', "Calls this router's mount sent to the vPool's owner over the router link since start", () => s.table?.forwarded ?? 0);
  g('vpoolfs_link_calls_direct', "Calls this router's mount sent straight to the router a vDisk is delegated to (not through the vPool's owner) since start", () => s.direct());
  g('vpoolfs_link_calls_served', 'Calls followers sent this router over the router link since start', () => s.served);
  g('vpoolfs_link_connections', "Followers connected to this router's link now", () => s.connections);
  g('vpoolfs_link_connections_accepted', 'Follower connections accepted since start', () => s.accepted);
  g('vpoolfs_link_connected', "1 while this router's mount is connected to the owner's router link", () => (s.linked() ? 1 : 0));
  g('vpoolfs_link_waiting_calls', "Calls of this router's mount waiting for an owner (a takeover or a move)", () => s.table?.waiting ?? 0);
}
