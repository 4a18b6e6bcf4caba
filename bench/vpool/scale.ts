/**
 * `npm run bench:scale`: the namespace at scale through a real mount (issue 15, "the namespace at scale"),
 * one router, no registry. For each count N of vDisks, on a fresh state and file:// backend:
 *
 *   create    N empty files created one after the other in the mount's root (open O_CREAT + close)
 *   list      one readdir of the root and a stat of each entry (what `ls -l` does)
 *   stop      SIGTERM to the daemon until it exited and the mount is gone, nothing to ship
 *   restart   start with the state kept (local restart of every vDisk) until the mount is ready
 *   rebuild   start with the state directory removed (the tree and every vDisk from the backend) until ready
 *
 * Printed per vDisk (ms) and in total, so that a figure growing faster than N shows at once. Not a test:
 * nothing passes or fails. Default counts 250,500,1000 (quick); the sizes on demand:
 *
 *   node dist/bench/vpool/scale.js [--counts 1000,5000,10000] [--dir BASE] [--cpu-prof DIR] [--no-restart]
 *
 * `--no-restart` skips the restart and the rebuild. `--cpu-prof DIR` runs the daemon under `node --cpu-prof` (one profile per daemon run, summarise it with
 * dist/bench/mount/cpuprofile-top.js). Needs root and /dev/fuse.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMountpoint } from '../shared/mount-target.js';

const CLI = fileURLToPath(new URL('../../tools/cli.js', import.meta.url));

const { values: args } = parseArgs({
  options: { counts: { type: 'string', default: process.env.VPOOLFS_BENCH_COUNTS ?? '250,500,1000' }, dir: { type: 'string' }, 'cpu-prof': { type: 'string' }, 'no-restart': { type: 'boolean' } },
});
const counts = String(args.counts).split(',').map((s) => Number.parseInt(s, 10)).filter((n) => n > 0);

interface Daemon {
  child: ChildProcess;
  out: () => string;
  exited: Promise<void>;
}

function startDaemon(mp: string, state: string, backend: string): Daemon {
  const prof = args['cpu-prof'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(String(args['cpu-prof']))}`];
  const child = spawn(process.execPath, [...prof, CLI, 'mount', mp, '--state', state, '--backend', backend, '--dtl', 'none'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VPOOLFS_LOG_LEVEL: 'info' },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, out: () => out, exited };
}

/** Starts the daemon and waits for its "ready" line and the mount; returns the ms it took. */
async function up(mp: string, state: string, backend: string): Promise<{ d: Daemon; ms: number }> {
  const t0 = performance.now();
  const d = startDaemon(mp, state, backend);
  for (;;) {
    if (d.child.exitCode !== null) throw new Error(`the daemon exited before it was ready:\n${d.out()}`);
    if (d.out().includes('"message":"ready"') && isMountpoint(mp)) return { d, ms: performance.now() - t0 };
    await sleep(20);
  }
}

/** SIGTERM until exited and unmounted; ms. */
async function down(d: Daemon, mp: string): Promise<number> {
  const t0 = performance.now();
  d.child.kill('SIGTERM');
  await d.exited;
  while (isMountpoint(mp)) await sleep(10);
  const ms = performance.now() - t0;
  if (d.child.exitCode !== 0) throw new Error(`the daemon's clean stop failed (exit ${d.child.exitCode}):\n${d.out().slice(-4000)}`);
  return ms;
}

interface Row {
  n: number;
  create: number;
  list: number;
  stop: number;
  restart: number;
  rebuild: number;
}

async function one(n: number): Promise<Row> {
  const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-scale-'));
  const mp = path.join(root, 'mnt');
  const state = path.join(root, 'state');
  const backend = `file://${path.join(root, 'backend')}`;
  fs.mkdirSync(mp);
  let d: Daemon | null = null;
  try {
    let r = await up(mp, state, backend);
    d = r.d;
    let t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const fh = await fs.promises.open(path.join(mp, `vd${i}`), 'w');
      await fh.close();
    }
    const create = performance.now() - t0;
    t0 = performance.now();
    const names = await fs.promises.readdir(mp);
    for (const name of names) await fs.promises.stat(path.join(mp, name));
    const list = performance.now() - t0;
    if (names.length !== n) throw new Error(`listed ${names.length} entries, created ${n}`);
    const stop = await down(d, mp);
    d = null;
    if (args['no-restart'] === true) return { n, create, list, stop, restart: NaN, rebuild: NaN };
    r = await up(mp, state, backend);
    d = r.d;
    const restart = r.ms;
    await down(d, mp);
    d = null;
    fs.rmSync(state, { recursive: true, force: true });
    r = await up(mp, state, backend);
    d = r.d;
    const rebuild = r.ms;
    if ((await fs.promises.readdir(mp)).length !== n) throw new Error('the rebuilt tree lacks entries');
    await down(d, mp);
    d = null;
    return { n, create, list, stop, restart, rebuild };
  } finally {
    if (d !== null) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
    if (isMountpoint(mp)) execFileSync('umount', ['-l', mp]);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const n of counts) {
  const row = await one(n);
  rows.push(row);
  console.log(`measured ${n} vDisks`);
}
const per = (ms: number, n: number): string => (ms / n).toFixed(3).padStart(8);
const tot = (ms: number): string => `${(ms / 1000).toFixed(2)} s`.padStart(9);
console.log('\nper vDisk (ms) and total, one router, file:// backend, through the mount');
console.log(`${'vDisks'.padStart(7)} | ${'create'.padStart(8)} ${''.padStart(9)} | ${'list'.padStart(8)} ${''.padStart(9)} | ${'stop'.padStart(8)} ${''.padStart(9)} | ${'restart'.padStart(8)} ${''.padStart(9)} | ${'rebuild'.padStart(8)} ${''.padStart(9)}`);
for (const r of rows) {
  console.log(`${String(r.n).padStart(7)} | ${per(r.create, r.n)} ${tot(r.create)} | ${per(r.list, r.n)} ${tot(r.list)} | ${per(r.stop, r.n)} ${tot(r.stop)} | ${per(r.restart, r.n)} ${tot(r.restart)} | ${per(r.rebuild, r.n)} ${tot(r.rebuild)}`);
}
