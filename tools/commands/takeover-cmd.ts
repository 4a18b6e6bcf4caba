/**
 * `vpoolfs takeover --registry etcd://… --vpool NAME [--router R] [--force]` (docs/cluster.md, "Takeover: when
 * it is automatic"): a vPool whose owner's registry lease expired while some of its vDisks had writes not yet in
 * the backend and no DTL in sync is not taken over by itself; its followers and standbys wait. This verb prints
 * what a takeover may lose (each such vDisk, its DTL mode and state, since when) and, with --force, tells the
 * waiting router(s) to take it now (the key `/vpoolfs/vpools/<vpool>/takeover`, naming the dead owner and its
 * owner tag, registry/takeover.ts) and waits until one did. Without --force: the risk only, exit 1.
 * It talks to etcd directly, like `router list`.
 */
import type { Command } from 'commander';
import { RegistryError } from '../../registry/errors.js';
import { routerKey, ROUTERS, takeoverKey, type RouterRecord } from '../../registry/keys.js';
import { vpoolOwner } from '../../registry/ownership.js';
import { takeoverRisks, type TakeoverRequest } from '../../registry/takeover.js';
import { ConfigError } from '../daemon/config.js';
import { openRegistry, withRegistryOptions } from '../client/registry-open.js';
import { waitForRegistry } from '../client/registry-wait.js';

export interface TakeoverFlags {
  registry?: string;
  vpool?: string;
  router?: string;
  force?: boolean;
  /** How long --force waits for a router to take the vPool (ms). */
  waitMs?: string;
}

export async function runTakeover(flags: TakeoverFlags): Promise<void> {
  const reg = openRegistry('takeover', flags);
  if (flags.vpool === undefined) {
    reg.close();
    throw new ConfigError('takeover: which vPool? Give --vpool NAME');
  }
  const vpool = flags.vpool;
  const { client, down } = reg;
  try {
    const owner = await vpoolOwner(client, vpool).catch(down);
    if (owner === null) throw new RegistryError('NOT_FOUND', `vPool '${vpool}' has no owner in the registry: unknown, or released by a clean stop (then any router mounts it without a takeover)`, { vpool });
    const live = await client.get(routerKey(owner.router)).string().catch(down);
    if (live !== null) {
      const r = JSON.parse(live) as RouterRecord;
      throw new RegistryError('BUSY', `vPool '${vpool}' is owned by router '${owner.router}' (owner tag ${owner.tag}), which is alive (host ${r.host}, pid ${r.pid}): a takeover is for an owner whose registry lease has expired. Nothing changed`, { vpool, owner });
    }
    const waiting = Object.values(await client.getAll().prefix(ROUTERS).strings().catch(down))
      .map((v) => JSON.parse(v) as RouterRecord)
      .filter((r) => r.vpool === vpool && (r.role === 'follower' || r.role === 'standby') && (flags.router === undefined || r.name === flags.router));
    const risks = await takeoverRisks(client, vpool, owner).catch(down);
    const out: string[] = [`vPool '${vpool}' is owned by router '${owner.router}' (owner tag ${owner.tag}), whose registry lease has expired.`];
    if (risks.length === 0) out.push('Nothing at risk: every vDisk was recorded safe (nothing unshipped, or its DTL in sync); a waiting router takes it over by itself.');
    else {
      out.push(`A takeover may lose writes of ${risks.length} vDisk(s) that were not yet in the backend:`);
      for (const k of risks) out.push(`  ${k.path ?? '(unknown path)'} (vDisk ${k.id}): ${k.why}`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
    if (waiting.length === 0) {
      throw new RegistryError('NOT_FOUND', flags.router === undefined
        ? `no router is waiting to take vPool '${vpool}' over: start one (vpoolfs mount … --registry … --standby, or a follower), or mount it with --force`
        : `router '${flags.router}' is not waiting to take vPool '${vpool}' over (not alive, or not a follower or standby of it)`, { vpool });
    }
    process.stdout.write(`Waiting to take it over: ${waiting.map((r) => `'${r.name}' (${r.role})`).join(', ')}.\n`);
    if (flags.force !== true) {
      process.stdout.write('Not taken over: run again with --force to take it anyway.\n');
      process.exitCode = 1;
      return;
    }
    const req: TakeoverRequest = { owner: owner.router, tag: owner.tag, router: flags.router ?? null, at: new Date().toISOString(), risks };
    await client.put(takeoverKey(vpool)).value(JSON.stringify(req)).catch(down);
    const waitMs = flags.waitMs === undefined ? 60_000 : Number(flags.waitMs);
    const now = await waitForRegistry(async () => {
      const cur = await vpoolOwner(client, vpool).catch(() => owner);
      return cur !== null && cur.tag !== owner.tag ? cur : undefined;
    }, {
      waitMs, since: Date.now(), everyMs: 200,
      late: () => new RegistryError('BUSY', `the takeover of vPool '${vpool}' is requested, but no router took it within ${waitMs} ms (the request stays in the registry for router '${owner.router}' owner tag ${owner.tag})`, { vpool }),
    });
    process.stdout.write(`Taken over: router '${now.router}' owns vPool '${vpool}' now (owner tag ${now.tag}).\n`);
  } finally {
    client.close();
  }
}

export function addTakeoverCommand(program: Command, fail: (err: unknown) => never): void {
  withRegistryOptions(program
    .command('takeover')
    .description('a vPool whose owner died with vDisks not safe (unshipped writes, DTL not in sync): print what may be lost; with --force, make a waiting router take it over now'))
    .option('--vpool <name>', 'the vPool')
    .option('--router <name>', 'only this waiting router may take it (default: any follower or standby of the vPool)')
    .option('--force', 'take it over, losing what it says may be lost')
    .option('--wait-ms <ms>', 'with --force: how long to wait for a router to take it (default 60000)')
    .action((flags: TakeoverFlags) => runTakeover(flags).catch(fail));
}
