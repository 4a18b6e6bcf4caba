/**
 * `npm run bench:cluster` (issue 15): forwarded I/O through a follower router, as a ratio to the owner's own
 * mount, and the takeover time. One run, one machine:
 *
 *   a private etcd (test/helpers/etcd.ts's EtcdHandle), router A mounting the vPool (owner), router B mounting it
 *   too (follower: every call forwarded to A over the router link on loopback TCP), one file:// backend;
 *   4 KiB random write and read jobs (bench/fio.ts's workloads) on one vDisk, through A's mount and through B's,
 *   alternating, medians of --runs; the ratio B / A is the cost of forwarding.
 *   takeover: kill -9 A, the time until B serves the vPool with its own handlers (its log), with a registry lease
 *   of --lease seconds (the lease's expiry is most of it), medians of --takeovers runs (each a fresh A).
 *
 *   node dist/bench/cluster.js [--runtime 3] [--ramp 1] [--runs 3] [--size 128M] [--lease 2] [--takeovers 3] [--dir BASE]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EtcdHandle, freePort } from '../test/helpers/etcd.js';
import { FILE_NAMES, layOut, median, runFio, WORKLOADS } from './fio.js';

const { values: args } = parseArgs({
  options: {
    runtime: { type: 'string', default: '3' }, ramp: { type: 'string', default: '1' }, runs: { type: 'string', default: '3' },
    size: { type: 'string', default: '128M' }, lease: { type: 'string', default: '2' }, takeovers: { type: 'string', default: '3' }, dir: { type: 'string' },
  },
});
const CLI = fileURLToPath(new URL('../tools/cli.js', import.meta.url));
const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-cluster-'));
const fioOpts = { runtimeSec: Number(args.runtime), rampSec: Number(args.ramp), size: String(args.size) };
const runs = Number(args.runs);

class Router {
  readonly child: ChildProcess;
  out = '';
  readonly mountpoint: string;
  constructor(readonly name: string, etcd: string, lease: number) {
    this.mountpoint = path.join(root, `${name}-mnt`);
    fs.mkdirSync(this.mountpoint, { recursive: true });
    const cfg = path.join(root, `${name}.json`);
    fs.writeFileSync(cfg, JSON.stringify({ registryLeaseSeconds: lease, claimLeaseMs: 60_000, autoMove: false /* forwarded I/O is measured: the vPool must not move to the follower doing it */, schedule: { snapshot: null, retention: null, scrub: null } }));
    this.child = spawn(process.execPath, [CLI, 'mount', this.mountpoint, '--vpool', 'pool', '--router', name, '--state', path.join(root, `${name}-state`),
      '--backend', `file://${path.join(root, 'backend')}`, '--registry', etcd, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VPOOLFS_LOG_LEVEL: 'info' } });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** The first log entry whose message matches, or undefined. */
  entry(message: RegExp, after = 0): Record<string, unknown> | undefined {
    for (const line of this.out.split('\n')) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as Record<string, unknown>;
      if (message.test(String(e.message)) && Date.parse(String(e.timestamp)) >= after) return e;
    }
    return undefined;
  }

  async until(message: RegExp, after = 0): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const e = this.entry(message, after);
      if (e !== undefined) return e;
      if (this.child.exitCode !== null || Date.now() > deadline) throw new Error(`router ${this.name}: no ${message} (exit ${this.child.exitCode}):\n${this.out.slice(-3000)}`);
      await sleep(50);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill(signal);
      await exited;
    }
    await spawnWait('umount', ['-l', this.mountpoint]);
  }
}

function spawnWait(cmd: string, argv: string[]): Promise<number | null> {
  return new Promise((resolve) => spawn(cmd, argv, { stdio: 'ignore' }).on('exit', resolve));
}

/** Waits until router `name`'s vDisk records in the registry all say nothing is unshipped. */
async function allClean(registry: string, name: string): Promise<void> {
  for (;;) {
    const out = await new Promise<string>((resolve) => {
      let text = '';
      const c = spawn(process.execPath, [CLI, 'router', 'list', '--registry', registry, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
      c.stdout.on('data', (d: Buffer) => (text += d.toString()));
      c.on('exit', () => resolve(text));
    });
    try {
      const row = (JSON.parse(out) as Array<{ name: string; vdisks: Array<{ dtl: { dirty: boolean } | null }> }>).find((r) => r.name === name);
      if (row !== undefined && row.vdisks.length > 0 && row.vdisks.every((d) => d.dtl?.dirty === false)) return;
    } catch {
      // not answering yet: try again
    }
    await sleep(250);
  }
}

async function main(): Promise<void> {
  const etcdDir = path.join(root, 'etcd');
  fs.mkdirSync(etcdDir);
  const etcd = new EtcdHandle(etcdDir, await freePort(), await freePort());
  await etcd.start();
  const routers: Router[] = [];
  try {
    const lease = Number(args.lease);
    const a = new Router('ra', etcd.url, lease);
    routers.push(a);
    await a.until(/^ready$/);
    const b = new Router('rb', etcd.url, lease);
    routers.push(b);
    await b.until(/^ready$/);
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

    // takeover: kill -9 the owner, time until the follower serves with its own handlers; then a fresh follower
    const takeovers: number[] = [];
    let owner = a;
    let follower = b;
    for (let i = 0; i < Number(args.takeovers); i++) {
      // no DTL here: a takeover is automatic only once the owner recorded every vDisk clean (the takeover
      // rule, docs/cluster.md), so wait for that before the kill (not part of the time measured)
      await allClean(etcd.url, owner.name);
      const killedAt = Date.now();
      await owner.stop('SIGKILL');
      const e = await follower.until(/^took vPool 'pool' over from router/, killedAt);
      takeovers.push(Date.parse(String(e.timestamp)) - killedAt);
      await follower.until(/^ready$/, killedAt);
      process.stderr.write(`takeover ${i + 1}: ${takeovers[i]} ms\n`);
      const next = new Router(`r${i}`, etcd.url, lease);
      routers.push(next);
      await next.until(/^ready$/);
      owner = follower;
      follower = next;
    }
    const lines = [
      `forwarded I/O through a follower router (loopback TCP) vs the owner's own mount, medians of ${runs} runs of ${fioOpts.runtimeSec} s (fio, O_DIRECT, ${fioOpts.size} vDisk)`,
      '',
      '| workload | owner IOPS | follower IOPS | follower / owner |',
      '| --- | ---: | ---: | ---: |',
      ...rows.map((r) => `| ${r.workload} | ${r.owner} | ${r.follower} | ${r.ratio.toFixed(2)} |`),
      '',
      `takeover after kill -9 of the owner (registry lease ${lease} s): median ${median(takeovers)} ms of ${takeovers.join(', ')} ms (kill to the follower serving with its own handlers, its mount kept)`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify({ forwarded: rows, takeoverMs: takeovers, leaseSeconds: lease })}\n`);
  } finally {
    for (const r of routers.reverse()) await r.stop();
    await etcd.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
