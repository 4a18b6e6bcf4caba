/**
 * `vpoolfs move FILE --to ROUTER [--registry etcd://…]`: the vDisk FILE moves to router ROUTER — a live follower
 * of its vPool, or the vPool's owner (back) — and nothing else (docs/cluster.md, "Ownership per vDisk"). It asks
 * the vPool's owner through etcd (registry/vdisk-move.ts: refused at once when the router is unknown, not alive,
 * not a router of that vPool, or a vDisk move is running), prints its progress and the result. Exit 0 once moved.
 * `--to <owner> --force`: back from a DEAD delegate even when its record is not safe (what it had not shipped and
 * no sync DTL holds is lost) — the consent the owner does not give by itself (tools/daemon/vdisk-move.ts).
 *
 * `vpoolfs move --vpool NAME --to ROUTER`: a planned handover of the whole vPool from its live owner to the live
 * follower ROUTER (docs/cluster.md, "Moves"): every vDisk moves. It asks the owner through etcd (registry/move.ts:
 * refused at once, nothing changed, when the router is unknown, not alive, not a follower of that vPool, or a move
 * is running), prints the owner's progress (holding calls, shipping, handing over) and the result, then waits
 * until the new owner serves its router link. Exit 0 once moved; 1 when refused or abandoned (the old owner serves on).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { RegistryError } from '../../registry/errors.js';
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import { readMove, readMoveResult, requestMove } from '../../registry/move.js';
import { readVDiskMove, readVDiskMoveResult, requestVDiskMove } from '../../registry/vdisk-move.js';
import { vpoolOwner } from '../../registry/ownership.js';
import { ConfigError } from '../daemon/config.js';
import { POOL_API_XATTR, type PoolApiInfo } from '../client/locate.js';
import { openRegistry, withRegistryOptions } from '../client/registry-open.js';
import { waitForRegistry } from '../client/registry-wait.js';

export interface RouterMoveFlags {
  to?: string;
  registry?: string;
  vpool?: string;
  /** How long to wait for the handover and for the new owner to serve (ms). */
  waitMs?: string;
  /** A vDisk back from its DEAD delegate even when its record is not safe (its unshipped writes are lost). */
  force?: boolean;
}

/**
 * The vPool a path is on, from the `user.vpool.api` attribute every node of a vpoolfs mount answers (on a
 * follower's mount the owner answers it: its mountpoint is not this one, its vPool name is the one).
 */
async function vpoolOf(file: string): Promise<string> {
  const { getAttribute } = await import('fs-xattr');
  try {
    return (JSON.parse((await getAttribute(file, POOL_API_XATTR)).toString('utf8')) as PoolApiInfo).vpool;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(`move: ${file} is not a file on a mounted vPool (${POOL_API_XATTR}: ${code}); give a path on a vpoolfs mount, or --vpool NAME`);
  }
}

/** FILE's path inside its vPool: from the mountpoint (the top directory of FILE's filesystem) down. */
function pathInVPool(file: string): string {
  const abs = path.resolve(file);
  const dev = fs.statSync(abs).dev;
  let top = abs;
  while (path.dirname(top) !== top && fs.statSync(path.dirname(top)).dev === dev) top = path.dirname(top);
  return `/${path.relative(top, abs).split(path.sep).join('/')}`;
}

/** How a move's request and result are read (`result` first: the owner deletes the one and writes the other in one transaction). */
interface MoveReads<R> {
  result(): Promise<R | null>;
  request(): Promise<{ id: string; phase?: string } | null>;
  /** The error when the request went without a result. */
  gone(): Promise<Error>;
  /** The error when no result came within the wait (`phase`: where the move stood). */
  late(phase: string): Error;
}

/** Waits for the result of the move `req`, printing each phase its owner says on the way. */
async function waitForMove<R extends { id: string }>(req: { id: string; from: string; phase?: string }, reads: MoveReads<R>, waitMs: number, out: (line: string) => void): Promise<R> {
  let phase = req.phase;
  return waitForRegistry(async () => {
    const r = await reads.result();
    if (r !== null && r.id === req.id) return r;
    const cur = await reads.request();
    if (cur === null || cur.id !== req.id) {
      // the owner deletes the request and writes the result in one transaction: look at the result again
      const again = await reads.result();
      if (again?.id === req.id) return again;
      throw await reads.gone();
    }
    if (cur.phase !== phase && cur.phase !== undefined) out(`  ${req.from}: ${cur.phase}`);
    phase = cur.phase;
    return undefined;
  }, { waitMs, since: Date.now(), everyMs: 100, late: () => reads.late(phase ?? 'not started') });
}

/** `vpoolfs move FILE --to ROUTER`: that vDisk alone (see the header). */
async function runVDiskMove(file: string, flags: RouterMoveFlags & { to: string }): Promise<void> {
  const vpool = await vpoolOf(file);
  const p = pathInVPool(file);
  const reg = openRegistry('move', flags);
  const { client, down } = reg;
  const waitMs = flags.waitMs === undefined ? 120_000 : Number(flags.waitMs);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    const req = await requestVDiskMove(client, vpool, p, flags.to, flags.force === true).catch(down);
    out(`Moving vDisk ${p} of vPool '${vpool}' to router '${req.to}' (the vPool's owner is router '${req.from}', owner tag ${req.tag})`);
    const result = await waitForMove(req, {
      result: () => readVDiskMoveResult(client, vpool).catch(down),
      request: () => readVDiskMove(client, vpool).catch(down),
      gone: async () => new RegistryError('BUSY', `not moved: the request went without a result — router '${req.from}' stopped or died meanwhile`, { vpool }),
      late: (phase) => new RegistryError('BUSY', `router '${req.from}' did not move vDisk ${p} within ${waitMs} ms (${phase}); the request stays until it does or stops`, { vpool }),
    }, waitMs, out);
    if (!result.ok) throw new RegistryError('BUSY', `not moved: ${result.message}`, { vpool, result });
    out(`Moved: ${result.message}`);
  } finally {
    reg.close();
  }
}

export async function runRouterMove(file: string | undefined, flags: RouterMoveFlags): Promise<void> {
  if (flags.to === undefined) throw new ConfigError('move: to which router? Give --to ROUTER (vpoolfs router list shows them)');
  if ((file === undefined) === (flags.vpool === undefined)) throw new ConfigError('move: give the path of a file on the vPool (FILE: that vDisk moves) or --vpool NAME (the whole vPool moves), one of them');
  if (file !== undefined) return runVDiskMove(file, { ...flags, to: flags.to });
  const vpool = flags.vpool!;
  const reg = openRegistry('move', flags);
  const { client, down } = reg;
  const waitMs = flags.waitMs === undefined ? 120_000 : Number(flags.waitMs);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    const req = await requestMove(client, vpool, flags.to, 'operator').catch(down);
    out(`Moving vPool '${vpool}' from router '${req.from}' (owner tag ${req.tag}) to router '${req.to}': every vDisk of the vPool moves`);
    const t0 = Date.now();
    const result = await waitForMove(req, {
      result: () => readMoveResult(client, vpool).catch(down),
      request: () => readMove(client, vpool).catch(down),
      gone: async () => {
        const owner = await vpoolOwner(client, vpool).catch(down);
        return new RegistryError('BUSY', `not moved: the request went without a result — router '${req.from}' stopped or died meanwhile; vPool '${vpool}' is owned by ${owner === null ? 'nobody (released)' : `router '${owner.router}' (owner tag ${owner.tag})`}`, { vpool });
      },
      late: (phase) => new RegistryError('BUSY', `router '${req.from}' did not hand vPool '${vpool}' over within ${waitMs} ms (${phase}); the request stays until it does or stops`, { vpool }),
    }, waitMs, out);
    if (!result.ok) throw new RegistryError('BUSY', `not moved: ${result.message}`, { vpool, result });
    out(`Handed over after ${Date.now() - t0} ms: ${result.message}`);
    // the new owner opens the vPool (in place: its mount kept) and serves its router link
    const r = await waitForRegistry(async () => {
      const v = await client.get(routerKey(req.to)).string().catch(down);
      const r = v === null ? null : (JSON.parse(v) as RouterRecord);
      const owner = await vpoolOwner(client, vpool).catch(down);
      if (r !== null && r.role === 'owner' && r.address !== null && owner?.router === req.to) return r;
      if (owner?.router !== req.to) throw new RegistryError('BUSY', `vPool '${vpool}' moved to router '${req.to}', but is owned by ${owner === null ? 'nobody' : `router '${owner.router}'`} now (the new owner failed or stopped; see its log)`, { vpool });
      return undefined;
    }, { waitMs, since: t0, everyMs: 100, late: () => new RegistryError('BUSY', `router '${req.to}' owns vPool '${vpool}' but does not serve it yet after ${waitMs} ms (see its log)`, { vpool }) });
    out(`Router '${req.to}' serves vPool '${vpool}' now (router link at ${r.address}, ${Date.now() - t0} ms after asking); router '${req.from}' follows it`);
  } finally {
    reg.close();
  }
}

export function addRouterMoveCommand(program: Command, fail: (err: unknown) => never): void {
  withRegistryOptions(program
    .command('move')
    .description('move the vDisk FILE to another router of its vPool (a follower, or the vPool\'s owner: back), or with --vpool NAME hand the whole vPool over to a live follower (no I/O error for anyone): docs/cluster.md'))
    .argument('[file]', 'a vDisk on a vpoolfs mount (owner or follower): that vDisk moves')
    .requiredOption('--to <router>', 'the router to serve it (a live follower of the vPool, or its owner for a vDisk)')
    .option('--vpool <name>', 'the whole vPool moves, instead of one vDisk (FILE)')
    .option('--wait-ms <ms>', 'how long to wait for the handover and for the new owner to serve (default 120000)')
    .option('--force', 'FILE back to the vPool\'s owner from its DEAD delegate even when the delegate\'s writes not yet in the backend may be lost (the owner refuses that by itself)')
    .action((file: string | undefined, flags: RouterMoveFlags) => runRouterMove(file, flags).catch(fail));
}
