/**
 * `vpoolfs router list [PATH] [--registry etcd://HOST:PORT[,…]] [--json]`: the routers the registry knows, alive or
 * expired, their role (owner, follower, standby) and vPool, with their failure domain, address, DTL servers and the vDisks they own (registry/router-list.ts).
 * Two ways to the same answer:
 *  - with `--registry` (or $VPOOLFS_REGISTRY), and TLS and user flags as needed (tools/client/registry-open.ts): it
 *    talks to etcd directly, so it works with no router running, which is when it is needed most;
 *  - given a path on a registry mount (PATH or `--mount PATH`), it asks
 *    that mount's management API (GET /v1/routers), which answers from the router's own registry session: an
 *    operator on a router host needs no etcd address nor credentials.
 */
import type { Command } from 'commander';
import { listRouters, type RouterRow } from '../../registry/router-list.js';
import { isSafe } from '../../registry/keys.js';
import { ApiClientError, call } from '../../api/client.js';
import { ConfigError } from '../daemon/config.js';
import { poolApiOf } from '../client/locate.js';
import { openRegistry, withRegistryOptions, type RegistryFlags } from '../client/registry-open.js';

function table(rows: RouterRow[]): string {
  if (rows.length === 0) return 'no routers registered\n';
  const lines = [['ROUTER', 'STATE', 'ROLE', 'VPOOL', 'HOST', 'PID', 'FAILURE-DOMAIN', 'ADDRESS', 'DTL', 'VDISKS']];
  for (const r of rows) {
    lines.push([r.name, r.state, r.role ?? '-', r.vpool ?? '-', r.host ?? '-', r.pid === null ? '-' : String(r.pid), r.failureDomain ?? '-', r.address ?? '-', r.dtlServer?.join(',') ?? '-', String(r.vdisks.length)]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  let out = lines.map((l) => l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
  for (const r of rows) {
    for (const d of r.vdisks) {
      const dtl = d.dtl === null ? '' : `, DTL ${d.dtl.mode} ${d.dtl.state}, ${d.dtl.dirty ? 'unshipped writes' : 'clean'} since ${d.dtl.since}${isSafe(d.dtl) ? '' : ' — NOT SAFE to take over'}`;
      out += `  ${r.name}: ${d.vpool}:${d.path ?? d.id} (vDisk ${d.id}, owner tag ${d.tag}${dtl})\n`;
    }
  }
  for (const r of rows) {
    const w = r.waiting;
    if (w === null) continue;
    out += `  ${r.name}: WAITING since ${w.since} to take vPool '${w.vpool}' over from dead router '${w.owner}' (owner tag ${w.tag}): not automatic, ${w.risks.length} vDisk(s) may lose writes — run vpoolfs takeover --vpool ${w.vpool} --force\n`;
    for (const k of w.risks) out += `    ${k.path ?? '(unknown path)'} (vDisk ${k.id}): ${k.why}\n`;
  }
  return out;
}

export interface RouterListFlags extends RegistryFlags {
  json?: boolean;
  mount?: string;
}

/**
 * The routers as the mount at `where` sees them (its API answers from its registry session). A follower's mount
 * names its owner's API (its `user.vpool.api` is forwarded): the same registry, reachable when the owner runs on
 * this host; otherwise the error says to ask etcd.
 */
async function throughMount(where: string): Promise<RouterRow[]> {
  const info = await poolApiOf(where);
  let answer: { registry: string | null; routers: RouterRow[] };
  try {
    answer = await call<{ registry: string | null; routers: RouterRow[] }>({ socket: info.socket }, 'GET', '/v1/routers');
  } catch (err) {
    if (!(err instanceof ApiClientError) || err.body.code !== 'UNREACHABLE') throw err;
    throw new ConfigError(`router list: ${where} is on vPool '${info.vpool}', whose API named there (${info.socket}, the owner's when this mount is a follower) does not answer here (${err.body.errno}): is its router on another host? Give --registry etcd://HOST:PORT[,…] to ask etcd itself`);
  }
  if (answer.registry === null) throw new ConfigError(`router list: the vPool '${info.vpool}' at ${info.mountpoint} is not mounted with a registry (--registry); give --registry etcd://HOST:PORT[,…] to ask etcd itself`);
  return answer.routers;
}

export async function runRouterList(path: string | undefined, flags: RouterListFlags): Promise<void> {
  if (path !== undefined && flags.mount !== undefined) throw new ConfigError('router list: give the mount as PATH or as --mount PATH, not both');
  const mount = path ?? flags.mount;
  if (mount !== undefined && flags.registry !== undefined) throw new ConfigError('router list: give --registry (ask etcd) or a path on a mount (ask its router), not both');
  let rows: RouterRow[];
  if (mount !== undefined) rows = await throughMount(mount);
  else if (flags.registry === undefined && (process.env.VPOOLFS_REGISTRY ?? '') === '') {
    // not the one vPool mounted here by default: which mounts a host has is no basis for guessing a registry
    throw new ConfigError('router list: which registry? Give --registry etcd://HOST:PORT[,HOST:PORT…] (or VPOOLFS_REGISTRY), or the path of a registry mount (PATH or --mount PATH) to ask its router');
  } else {
    const reg = openRegistry('router list', flags);
    try {
      rows = await listRouters(reg.client).catch(reg.down);
    } finally {
      reg.close();
    }
  }
  process.stdout.write(flags.json === true ? `${JSON.stringify(rows, null, 2)}\n` : table(rows));
}

export function addRouterCommands(program: Command, fail: (err: unknown) => never): void {
  const router = program.command('router').description('the storage routers of the registry (etcd; docs/cluster.md)');
  withRegistryOptions(router
    .command('list')
    .description('every router the registry knows: alive or expired, role (owner, follower, standby), failure domain, address, DTL servers, the vDisks it owns; from etcd (--registry) or through the mount at PATH'))
    .argument('[path]', "a path on a registry mount: ask its router (its management API), which needs no etcd address nor credentials here")
    .option('--mount <path>', 'the same as PATH')
    .option('--json', 'print JSON')
    .action((path: string | undefined, flags: RouterListFlags) => runRouterList(path, flags).catch(fail));
}
