/**
 * A registry cluster whose routers each live in a network namespace of their own (helpers/netns.ts), for the
 * "real network" tests of issue 15 (test/follower-netns.test.ts, test/cluster-netns-*.test.ts): etcd listens on
 * the bridge's host address, every router link and DTL connection runs off loopback, so with a shared secret
 * (`--peer-secret-file`, `--dtl-secret-file`, one file for both). DTL servers run either in each router's
 * namespace (`dtl: 'routers'`, a server "on" each router host) or one on the bridge's host address
 * (`dtl: 'host'`). `mount(name, …)` gives the mount options of a router: its registry options
 * (helpers/registry.ts: registry lease 2 s), `--dtl sync` with the servers given, its router link on its own
 * address, the prefix that runs the daemon inside its namespace.
 */
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Bridge, RouterNs } from './netns.js';
import { DtlServerProcess } from './dtl-server.js';
import type { MountOpts } from './mount.js';
import { cluster, type Cluster } from './registry.js';

export interface NetRouter extends RouterNs {
  /** Its DTL server (`dtl: 'routers'`), listening on the router's address inside its namespace. */
  dtl?: DtlServerProcess;
}

export interface NetCluster {
  c: Cluster;
  secret: string;
  routers: Record<string, NetRouter>;
  /** The DTL server on the bridge's host address (`dtl: 'host'`). */
  hostDtl?: DtlServerProcess;
  /**
   * Mount options of router `name`: `--dtl sync` to `dtlServers` (addresses), its failure domain (default
   * `fd-<name>`), `extra` arguments and `config` keys on top of the registry's defaults.
   */
  mount(name: string, o: { dtlServers: string[]; failureDomain?: string; extra?: string[]; config?: Record<string, unknown> }): MountOpts;
}

export async function netCluster(
  t: ExecutionContext, bridge: Bridge, names: string[], o: { dtl: 'routers' | 'host'; backendOf?: (root: string) => string },
): Promise<NetCluster> {
  const routers: Record<string, NetRouter> = {};
  for (const name of names) routers[name] = await bridge.router(t, name);
  const c = await cluster(t, o.backendOf, bridge.hostIp);
  const secret = path.join(c.root, 'secret');
  writeFileSync(secret, randomBytes(24).toString('hex'));
  const startDtl = async (dir: string, listen: string, prefix: string[]): Promise<DtlServerProcess> => {
    const s = new DtlServerProcess(path.join(c.root, dir), listen, ['--secret-file', secret], prefix);
    t.teardown(() => s.kill9());
    return s.start();
  };
  let hostDtl: DtlServerProcess | undefined;
  if (o.dtl === 'host') hostDtl = await startDtl('dtl', `${bridge.hostIp}:0`, []);
  else for (const r of Object.values(routers)) r.dtl = await startDtl(`dtl-${r.name}`, `${r.ip}:0`, r.prefix);
  return {
    c, secret, routers, hostDtl,
    mount(name, { dtlServers, failureDomain, extra = [], config = {} }) {
      const r = routers[name];
      if (r === undefined) throw new Error(`no router ${name} in this cluster`);
      const args = [
        '--dtl', 'sync', '--dtl-server', dtlServers.join(','), '--dtl-secret-file', secret, '--peer-secret-file', secret,
        '--peer-listen', `${r.ip}:0`, ...(failureDomain === undefined ? [] : ['--failure-domain', failureDomain]), ...extra,
      ];
      return { ...c.router(name, args, { dtlRetryMs: 300, ...config }), prefix: r.prefix };
    },
  };
}
