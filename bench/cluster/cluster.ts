/**
 * `npm run bench:cluster` (issue 15): forwarded I/O through a follower router, as a ratio to the owner's own
 * mount, and the takeover time. One run, one machine:
 *
 *   a private etcd (test/helpers/etcd.ts's EtcdHandle), router A mounting the vPool (owner), router B mounting it
 *   too (follower: every call forwarded to A over the router link on loopback TCP), one file:// backend;
 *   4 KiB random write and read jobs (bench/shared/fio.ts's workloads) on one vDisk, through A's mount and through B's,
 *   alternating, medians of --runs; the ratio B / A is the cost of forwarding.
 *   takeover: kill -9 A, the time until B serves the vPool with its own handlers (its log), with a registry lease
 *   of --lease seconds (the lease's expiry is most of it), medians of --takeovers runs (each a fresh A).
 *   history: the same takeover for a vDisk with a history of N TLogs, for each N of --history (default 250,1000;
 *   or VPOOLFS_BENCH_HISTORY), with map checkpoints on and off (bench/cluster/cluster-history.ts): with them the time
 *   should not grow with N, without them it does. Each N × mode is one run in a vPool of its own.
 *   vdisk-move: one vDisk moved to B and back (`vpoolfs move FILE --to rb`, ownership per vDisk), --runs rounds:
 *   the handover and return times, and fio through B's own mount while B serves it as a ratio to A's local I/O
 *   (bench/cluster/cluster-vdisk-move.ts).
 *   --parts io,takeover,history,vdisk-move (default all four) runs some of them.
 *
 *   node dist/bench/cluster/cluster.js [--runtime 3] [--ramp 1] [--runs 3] [--size 128M] [--lease 2] [--takeovers 3]
 *                              [--history 250,1000] [--parts io,takeover,history,vdisk-move] [--dir BASE]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EtcdHandle, freePort } from '../../test/helpers/etcd.js';
import { allClean, Router } from './cluster-router.js';
import { historyTable, historyTakeover, type HistoryRow } from './cluster-history.js';
import { vdiskMoveBench, vdiskMoveTable } from './cluster-vdisk-move.js';
import { FILE_NAMES, layOut, median, runFio, WORKLOADS } from '../shared/fio.js';

const { values: args } = parseArgs({
  options: {
    runtime: { type: 'string', default: '3' }, ramp: { type: 'string', default: '1' }, runs: { type: 'string', default: '3' },
    size: { type: 'string', default: '128M' }, lease: { type: 'string', default: '2' }, takeovers: { type: 'string', default: '3' }, dir: { type: 'string' },
    history: { type: 'string', default: process.env.VPOOLFS_BENCH_HISTORY ?? '250,1000' }, parts: { type: 'string', default: 'io,takeover,history,vdisk-move' },
  },
});
const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-cluster-'));
const fioOpts = { runtimeSec: Number(args.runtime), rampSec: Number(args.ramp), size: String(args.size) };
const runs = Number(args.runs);
const parts = new Set(String(args.parts).split(','));
const histories = String(args.history).split(',').map((x) => Number.parseInt(x, 10)).filter((n) => n > 0);

async function main(): Promise<void> {
  const etcdDir = path.join(root, 'etcd');
  fs.mkdirSync(etcdDir);
  const etcd = new EtcdHandle(etcdDir, await freePort(), await freePort());
  await etcd.start();
  const routers: Router[] = [];
  const lease = Number(args.lease);
  const lines: string[] = [];
  const json: Record<string, unknown> = { leaseSeconds: lease };
  try {
    if (parts.has('io') || parts.has('takeover') || parts.has('vdisk-move')) {
      const a = new Router(root, 'ra', etcd.url, lease);
      routers.push(a);
      await a.until(/^ready$/);
      const b = new Router(root, 'rb', etcd.url, lease);
      routers.push(b);
      await b.until(/^ready$/);
      if (parts.has('io')) {
        const rows = await forwardedIo(a, b);
        json.forwarded = rows;
        lines.push(
          `forwarded I/O through a follower router (loopback TCP) vs the owner's own mount, medians of ${runs} runs of ${fioOpts.runtimeSec} s (fio, O_DIRECT, ${fioOpts.size} vDisk)`,
          '',
          '| workload | owner IOPS | follower IOPS | follower / owner |',
          '| --- | ---: | ---: | ---: |',
          ...rows.map((r) => `| ${r.workload} | ${r.owner} | ${r.follower} | ${r.ratio.toFixed(2)} |`),
          '',
        );
      }
      if (parts.has('vdisk-move')) {
        // before the takeovers, which kill A
        const r = await vdiskMoveBench(a, b, etcd.url, runs, fioOpts, (s) => process.stderr.write(`${s}\n`));
        json.vdiskMove = r;
        lines.push(...vdiskMoveTable(r, runs, fioOpts), '');
      }
      if (parts.has('takeover')) {
        // the takeover waits for the owner's vDisks recorded clean: there must be one
        if (!parts.has('io')) await layOut(path.join(a.mountpoint, FILE_NAMES.main), '4M');
        const takeovers = await takeoversOf(etcd.url, lease, a, b, routers);
        json.takeoverMs = takeovers;
        lines.push(`takeover after kill -9 of the owner (registry lease ${lease} s): median ${median(takeovers)} ms of ${takeovers.join(', ')} ms (kill to the follower serving with its own handlers, its mount kept)`, '');
      }
    }
    if (parts.has('history')) {
      const rows: HistoryRow[] = [];
      for (const n of histories) {
        for (const on of [true, false]) {
          const row = await historyTakeover(root, etcd.url, lease, n, on, (s) => process.stderr.write(`${s}\n`));
          process.stderr.write(`history ${row.tlogs} TLogs, checkpoints ${on ? 'on' : 'off'}: served ${row.takeoverMs} ms after the kill (open ${row.openMs} ms, rebuild ${row.rebuildMs} ms, ${row.replayed} of ${row.chain} TLogs replayed)\n`);
          rows.push(row);
        }
      }
      json.history = rows;
      lines.push(...historyTable(rows, lease), '');
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } finally {
    for (const r of routers.reverse()) await r.stop();
    await etcd.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** 4 KiB random writes and reads through the owner's mount and through the follower's, alternating. */
async function forwardedIo(a: Router, b: Router): Promise<Array<{ workload: string; owner: number; follower: number; ratio: number }>> {
  const file = FILE_NAMES.main;
  process.stderr.write(`laying out ${fioOpts.size} through the owner's mount\n`);
  await layOut(path.join(a.mountpoint, file), fioOpts.size);
  const rows: Array<{ workload: string; owner: number; follower: number; ratio: number }> = [];
  for (const name of ['randwrite-4k-qd1', 'randwrite-4k-qd16x4', 'randread-4k-qd1', 'randread-4k-qd16x4']) {
    const w = WORKLOADS.find((x) => x.name === name)!;
    const own: number[] = [];
    const fwd: number[] = [];
    for (let i = 0; i < runs; i++) {
      own.push((await runFio(path.join(a.mountpoint, file), w, fioOpts)).iops);
      fwd.push((await runFio(path.join(b.mountpoint, file), w, fioOpts)).iops);
    }
    const row = { workload: name, owner: Math.round(median(own)), follower: Math.round(median(fwd)), ratio: median(fwd) / median(own) };
    rows.push(row);
    process.stderr.write(`${name}: owner ${row.owner} IOPS, follower ${row.follower} IOPS (${row.ratio.toFixed(2)})\n`);
  }
  return rows;
}

/** kill -9 the owner, time until the follower serves with its own handlers; then a fresh follower; --takeovers times. */
async function takeoversOf(etcd: string, lease: number, a: Router, b: Router, routers: Router[]): Promise<number[]> {
  const takeovers: number[] = [];
  let owner = a;
  let follower = b;
  for (let i = 0; i < Number(args.takeovers); i++) {
    // no DTL here: a takeover is automatic only once the owner recorded every vDisk clean (the takeover
    // rule, docs/cluster.md), so wait for that before the kill (not part of the time measured)
    await allClean(etcd, owner.name);
    const killedAt = Date.now();
    await owner.stop('SIGKILL');
    const e = await follower.until(/^took vPool 'pool' over from router/, killedAt);
    takeovers.push(Date.parse(String(e.timestamp)) - killedAt);
    await follower.until(/^ready$/, killedAt);
    process.stderr.write(`takeover ${i + 1}: ${takeovers[i]} ms\n`);
    const next = new Router(root, `r${i}`, etcd, lease);
    routers.push(next);
    await next.until(/^ready$/);
    owner = follower;
    follower = next;
  }
  return takeovers;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
