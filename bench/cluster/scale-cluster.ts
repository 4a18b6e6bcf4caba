/**
 * `npm run bench:scale-cluster`: the namespace at scale across routers (issue 15: "with the registry: 10,000
 * vDisks across the routers, create/list/stop/takeover each linear or better, printed by the bench"). For each
 * count N, on a fresh etcd (test/helpers/etcd.ts's EtcdHandle), file:// backend and routers (bench/cluster/cluster-router.ts,
 * registry lease 2 s, loopback):
 *
 *   create (follower)  N/2 empty files created one after the other through router B's mount (a follower of A:
 *                      every call forwarded to A over the router link)
 *   create (owner)     N/2 more through A's own mount
 *   list (owner/foll.) one readdir of the root and a stat of each of the N entries, on A, then on B
 *   stop (owner)       SIGTERM to A (the owner, N vDisks, nothing to ship) until it exited and its mount is gone
 *   take (released)    from that SIGTERM to B serving the released vPool with its own handlers (B opens N
 *                      vDisks, rebuilt from the backend: it has no local state)
 *   join (follower)    router C mounting as a follower of B, until ready
 *   takeover (kill -9) kill -9 of B (once its vDisks are recorded clean: the takeover rule), until C serves;
 *                      most of it is the registry lease (2 s): `open` is the part after C's TAKEOVER decision
 *   stop (taker)       SIGTERM to C, the owner now, until exited and unmounted
 *
 * Printed in total and per vDisk (ms), so that a figure growing faster than N shows at once. Not a test.
 *
 *   node dist/bench/cluster/scale-cluster.js [--counts 1000,2000,4000] [--dir BASE] [--lease 2]
 *   VPOOLFS_BENCH_COUNTS=5000,10000 npm run bench:scale-cluster
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';
import { EtcdHandle, freePort } from '../../test/helpers/etcd.js';
import { allClean, Router } from './cluster-router.js';
import { isMountpoint } from '../shared/mount-target.js';

const { values: args } = parseArgs({
  options: { counts: { type: 'string', default: process.env.VPOOLFS_BENCH_COUNTS ?? '1000,2000,4000' }, dir: { type: 'string' }, lease: { type: 'string', default: '2' } },
});
const counts = String(args.counts).split(',').map((s) => Number.parseInt(s, 10)).filter((n) => n > 1);
const lease = Number(args.lease);
/** A rebuild from the backend takes 10–20 ms per vDisk here (docs/performance.md): minutes at 10,000. */
const LONG = 3_600_000;

async function create(dir: string, prefix: string, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await (await fs.promises.open(path.join(dir, `${prefix}${i}`), 'w')).close();
  return performance.now() - t0;
}

async function list(dir: string, n: number): Promise<number> {
  const t0 = performance.now();
  const names = await fs.promises.readdir(dir);
  for (const name of names) await fs.promises.stat(path.join(dir, name));
  if (names.length !== n) throw new Error(`listed ${names.length} entries in ${dir}, want ${n}`);
  return performance.now() - t0;
}

/** SIGTERM until exited (exit 0) and unmounted; ms. */
async function cleanStop(r: Router): Promise<number> {
  const t0 = performance.now();
  const exited = new Promise<void>((resolve) => r.child.once('exit', () => resolve()));
  r.child.kill('SIGTERM');
  await exited;
  while (isMountpoint(r.mountpoint)) await sleep(10);
  const ms = performance.now() - t0;
  if (r.child.exitCode !== 0) throw new Error(`router ${r.name}'s clean stop failed (exit ${r.child.exitCode}):\n${r.out.slice(-4000)}`);
  return ms;
}

const stamp = (e: Record<string, unknown>): number => Date.parse(String(e.timestamp));

type Row = Record<'n' | 'createFollower' | 'createOwner' | 'listOwner' | 'listFollower' | 'stopOwner' | 'takeReleased' | 'join' | 'takeover' | 'takeoverOpen' | 'stopTaker', number>;

async function one(n: number): Promise<Row> {
  const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-scale-cluster-'));
  const etcdDir = path.join(root, 'etcd');
  fs.mkdirSync(etcdDir);
  const etcd = new EtcdHandle(etcdDir, await freePort(), await freePort());
  await etcd.start();
  const routers: Router[] = [];
  live = routers;
  const start = async (name: string): Promise<{ r: Router; ms: number }> => {
    const t0 = performance.now();
    const r = new Router(root, name, etcd.url, lease);
    routers.push(r);
    await r.until(/^ready$/, 0, LONG);
    return { r, ms: performance.now() - t0 };
  };
  try {
    const { r: a } = await start('ra');
    const { r: b } = await start('rb');
    const half = Math.floor(n / 2);
    const createFollower = await create(b.mountpoint, 'f', half);
    const createOwner = await create(a.mountpoint, 'o', n - half);
    process.stderr.write(`${n}: created\n`);
    const listOwner = await list(a.mountpoint, n);
    const listFollower = await list(b.mountpoint, n);

    // the owner's clean stop; the follower takes the released vPool
    const stopAt = Date.now();
    const stopOwner = await cleanStop(a);
    const took = await b.until(/^took vPool 'pool' over from router 'ra'/, stopAt, LONG);
    const takeReleased = stamp(took) - stopAt;
    process.stderr.write(`${n}: owner stopped, follower took over\n`);

    // a new follower of B, then kill -9 of B
    const { r: c, ms: join } = await start('rc');
    process.stderr.write(`${n}: a new follower joined; waiting until the owner's vDisks are recorded clean\n`);
    await allClean(etcd.url, b.name);
    const killedAt = Date.now();
    b.child.kill('SIGKILL');
    const decided = await c.until(/^TAKEOVER: this follower took vPool 'pool'/, killedAt, LONG);
    const serving = await c.until(/^took vPool 'pool' over from router 'rb'/, killedAt, LONG);
    const takeover = stamp(serving) - killedAt;
    const takeoverOpen = stamp(serving) - stamp(decided);
    await list(c.mountpoint, n);
    process.stderr.write(`${n}: kill -9, taken over\n`);
    const stopTaker = await cleanStop(c);
    return { n, createFollower, createOwner, listOwner, listFollower, stopOwner, takeReleased, join, takeover, takeoverOpen, stopTaker };
  } catch (err) {
    // what the routers said about it (their warnings and errors)
    for (const r of routers) {
      const bad = r.out.split('\n').filter((l) => /"level":"(warn|error)"/.test(l) || !l.startsWith('{')).slice(-15);
      process.stderr.write(`--- router ${r.name} (exit ${r.child.exitCode}), its last warnings and errors:\n${bad.join('\n').slice(-6000)}\n`);
    }
    throw err;
  } finally {
    for (const r of routers.reverse()) await r.stop('SIGKILL');
    await etcd.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** The routers of the count being measured: killed (and their last log lines printed) on SIGINT/SIGTERM. */
let live: Router[] = [];
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const r of live) {
      process.stderr.write(`--- ${r.name} (last lines)\n${r.out.slice(-3000)}\n`);
      r.child.kill('SIGKILL');
      try {
        execFileSync('umount', ['-l', r.mountpoint]);
      } catch {
        // not mounted
      }
    }
    process.exit(130);
  });
}

const rows: Row[] = [];
process.stderr.write(`bench:scale-cluster: counts ${counts.join(', ')} vDisks (VPOOLFS_BENCH_COUNTS or --counts), registry lease ${lease} s\n`);
for (const n of counts) {
  rows.push(await one(n));
  process.stderr.write(`${n}: ${JSON.stringify(rows[rows.length - 1])}\n`); // a row survives a later count's failure
}

const cols: Array<[keyof Row, string, number]> = [
  // column, header, how many vDisks the figure is per
  ['createFollower', 'create via follower', 0.5], ['createOwner', 'create via owner', 0.5], ['listOwner', 'list on owner', 1], ['listFollower', 'list on follower', 1],
  ['stopOwner', 'stop owner', 1], ['takeReleased', 'take released', 1], ['join', 'follower joins', 1], ['takeover', 'takeover kill -9', 1],
  ['takeoverOpen', 'of which open', 1], ['stopTaker', 'stop taker', 1],
];
const lines = [
  `the namespace at scale across routers: owner A, follower B (then C), registry lease ${lease} s, file:// backend, loopback; total s and ms per vDisk`,
  '',
  `| vDisks | ${cols.map(([, h]) => h).join(' | ')} |`,
  `| ---: | ${cols.map(() => '---:').join(' | ')} |`,
  ...rows.map((r) => `| ${r.n} | ${cols.map(([k, , per]) => `${(r[k] / 1000).toFixed(2)} s, ${(r[k] / Math.max(1, Math.round(r.n * per))).toFixed(3)}`).join(' | ')} |`),
];
process.stdout.write(`${lines.join('\n')}\n`);
process.stdout.write(`${JSON.stringify({ leaseSeconds: lease, rows })}\n`);
