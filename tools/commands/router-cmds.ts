/**
 * `vpoolfs router list --registry etcd://HOST:PORT[,…] [--json]`: the routers the registry knows, alive or
 * expired, their role (owner, follower, standby) and vPool, with their failure domain, address, DTL servers and the vDisks they own (registry/router-list.ts).
 * It talks to etcd directly: it works with no router running, which is when it is needed most.
 */
import type { Command } from 'commander';
import { listRouters, type RouterRow } from '../../registry/router-list.js';
import { isSafe } from '../../registry/keys.js';
import { openRegistry } from '../client/registry-open.js';

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

export async function runRouterList(flags: { registry?: string; json?: boolean }): Promise<void> {
  const reg = openRegistry('router list', flags.registry);
  try {
    const rows = await listRouters(reg.client).catch(reg.down);
    process.stdout.write(flags.json === true ? `${JSON.stringify(rows, null, 2)}\n` : table(rows));
  } finally {
    reg.close();
  }
}

export function addRouterCommands(program: Command, fail: (err: unknown) => never): void {
  const router = program.command('router').description('the storage routers of the registry (etcd; docs/cluster.md)');
  router
    .command('list')
    .description('every router the registry knows: alive or expired, role (owner, follower, standby), failure domain, address, DTL servers, the vDisks it owns')
    .option('--registry <url>', 'etcd://HOST:PORT[,HOST:PORT…] (default: $VPOOLFS_REGISTRY)')
    .option('--json', 'print JSON')
    .action((flags: { registry?: string; json?: boolean }) => runRouterList(flags).catch(fail));
}
