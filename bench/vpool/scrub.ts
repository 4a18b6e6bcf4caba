/**
 * Scrubbing at the volume layer (issue 12, `npm run bench:scrub`), in one run:
 *
 *   throughput    a vDisk of --size written in full, then random 4–64 KiB overwrites of --churn × its size
 *                 with a snapshot every --snap MiB, all but the last snapshot deleted; one scrub: MB/s read
 *                 and written by the job, bytes freed, wall time
 *   address order a cold 1 MiB sequential read of the whole vDisk (state directory removed: both caches
 *                 empty) after the overwrites, before the scrub and after it; the ratio after / before is
 *                 printed (the scrub rewrites live clusters in address order within each segment)
 *
 *   fio + scrub   through a real mount (the CLI's `vpoolfs mount`, default scrub limits, or --limits JSON):
 *                 a vDisk of --mount-size written by fio, snapshotted, half of its 4 KiB blocks overwritten at
 *                 random, the snapshot deleted (so about half of every old SCO is garbage); then for each fio
 *                 job (4 KiB random write qd 1, 4 KiB random read qd 1) fio alone on that vDisk, fio again
 *                 while `vpoolfs scrub` scrubs the same vDisk, fio alone once more; the ratio with / alone (the
 *                 mean of the two) is printed, with how long
 *                 the scrub took and how much of the fio run it overlapped (the garbage is made again before
 *                 each job). Skipped with a message without /dev/fuse or fio; --no-mount skips it.
 *
 * The backend is file:// under --dir (default the OS temp directory).
 *
 *   node dist/bench/vpool/scrub.js [--size 128] [--churn 2] [--snap 32] [--dir BASE]
 *        [--mount-size 128] [--runtime 15] [--ramp 2] [--limits '{"bandwidthMBps":100}'] [--no-mount]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { spawn, spawnSync } from 'node:child_process';
import { openVPool } from '../../volume/vpool.js';
import { layOut, runFio, WORKLOADS, type FioResult } from '../shared/fio.js';
import { DEFAULT_CLI, vpoolfsTarget } from '../shared/mount-target.js';
import type { VPool } from '../../volume/types.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';
import { setLogLevel } from '../../util/log.js';

const MiB = 2 ** 20;
const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '128' }, churn: { type: 'string', default: '2' }, snap: { type: 'string', default: '32' }, dir: { type: 'string' },
    'mount-size': { type: 'string', default: '128' }, runtime: { type: 'string', default: '15' }, ramp: { type: 'string', default: '2' },
    limits: { type: 'string' }, 'no-mount': { type: 'boolean', default: false },
  },
});
const size = Number.parseInt(String(args.size), 10) * MiB;
const churn = Number(args.churn);
const snapEvery = Number.parseInt(String(args.snap), 10) * MiB;
setLogLevel('warn');

const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-scrub-'));
const opts: VPoolOptions = { name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`, scoMaxAgeMs: 3_600_000 };

/** A cold sequential read of the whole vDisk (after a rebuild from the backend): MB/s. */
async function coldRead(): Promise<number> {
  fs.rmSync(opts.stateDir, { recursive: true, force: true });
  const pool = await openVPool(opts);
  try {
    const v = pool.vdisk('/d');
    const t0 = performance.now();
    for (let pos = 0; pos < v.size; pos += MiB) await v.read(pos, MiB);
    return v.size / MiB / ((performance.now() - t0) / 1000);
  } finally {
    await pool.close();
  }
}

async function main(): Promise<void> {
  let pool: VPool = await openVPool(opts);
  await pool.createFile('/d', 0o644, 0, 0, size);
  const v = pool.vdisk('/d');
  const block = randomBytes(MiB);
  for (let pos = 0; pos < size; pos += MiB) await v.write(pos, block);
  let written = 0;
  let nextSnap = snapEvery;
  let n = 0;
  while (written < churn * size) {
    const len = 4096 * (1 + Math.floor(Math.random() * 16));
    const off = Math.floor(Math.random() * ((size - len) / 4096)) * 4096;
    await v.write(off, randomBytes(len));
    written += len;
    if (written >= nextSnap) {
      await pool.snapshots.create('/d', `s${n++}`);
      nextSnap += snapEvery;
    }
  }
  for (const s of pool.snapshots.list('/d').slice(0, -1)) await pool.snapshots.remove('/d', s.name);
  await pool.close();
  const before = await coldRead();
  pool = await openVPool(opts);
  const t0 = performance.now();
  const r = await pool.scrub.scrub('/d');
  const secs = (performance.now() - t0) / 1000;
  await pool.close();
  const after = await coldRead();
  const mb = (x: number): string => (x / MiB).toFixed(1);
  console.log(`vDisk ${mb(size)} MiB, ${mb(written)} MiB of random overwrites, ${n} snapshots (${n - 1} deleted)`);
  console.log(`scrub: ${secs.toFixed(2)} s; read ${mb(r.stats.bytesRead)} MiB (${(r.stats.bytesRead / MiB / secs).toFixed(1)} MB/s), ` +
    `wrote ${mb(r.stats.bytesWritten)} MiB (${(r.stats.bytesWritten / MiB / secs).toFixed(1)} MB/s), freed ${mb(r.swept.bytes)} MiB, ${r.relocated} clusters moved`);
  console.log(`cold sequential read: ${before.toFixed(1)} MB/s before the scrub, ${after.toFixed(1)} MB/s after (ratio ${(after / before).toFixed(2)})`);
}

/** The CLI, as a child; resolves with its stdout (rejects on a failure, with its stderr). */
function cli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEFAULT_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`vpoolfs ${args.join(' ')}: exit ${code}: ${err.trim().slice(-500)}`))));
  });
}

/** Half of `file`'s 4 KiB blocks overwritten at random around a snapshot that is then deleted: garbage for a scrub. */
async function makeGarbage(file: string, sizeMiB: number): Promise<void> {
  await cli(['snapshot', 'create', file, 'g']);
  const r = spawnSync('fio', ['--name=half', `--filename=${file}`, `--size=${sizeMiB}M`, '--rw=randwrite', '--bs=4k', '--ioengine=libaio', '--direct=1',
    '--iodepth=16', `--io_size=${sizeMiB / 2}M`, '--randrepeat=0', '--fallocate=none', '--overwrite=0', '--end_fsync=1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fio (making garbage) failed: ${r.stderr}`);
  await cli(['snapshot', 'delete', file, 'g']);
}

/** fio through a mount, alone and while the same vDisk is scrubbed. */
async function mountPart(): Promise<void> {
  if (args['no-mount']) return;
  if (!fs.existsSync('/dev/fuse') || spawnSync('fio', ['--version']).status !== 0) {
    console.log('fio + scrub: skipped (needs /dev/fuse and fio)');
    return;
  }
  const sizeMiB = Number.parseInt(String(args['mount-size']), 10);
  const fioOpts = { runtimeSec: Number(args.runtime), rampSec: Number(args.ramp), size: `${sizeMiB}M` };
  const extra: string[] = [];
  if (args.limits !== undefined) {
    const cfg = path.join(root, 'mount-config.json');
    fs.writeFileSync(cfg, JSON.stringify({ scrub: JSON.parse(args.limits) as unknown }));
    extra.push('--config', cfg);
  }
  const target = vpoolfsTarget('vpoolfs', root, DEFAULT_CLI, extra);
  const stop = (): void => void target.stop().then(() => process.exit(130));
  process.once('SIGINT', stop);
  await target.start();
  try {
    const file = path.join(target.dir, 'vm.img');
    await layOut(file, fioOpts.size);
    console.log(`fio + scrub: a ${sizeMiB} MiB vDisk through the mount, limits ${args.limits ?? 'default'}; fio ${fioOpts.rampSec} s ramp + ${fioOpts.runtimeSec} s`);
    for (const name of ['randwrite-4k-qd1', 'randread-4k-qd1']) {
      const w = WORKLOADS.find((x) => x.name === name)!;
      await makeGarbage(file, sizeMiB);
      const alone: FioResult = await runFio(file, w, fioOpts);
      const t0 = performance.now();
      let scrubSecs = NaN;
      const scrub = cli(['scrub', file, '--json']).then((out) => {
        scrubSecs = (performance.now() - t0) / 1000;
        return JSON.parse(out.trim().split('\n').pop()!) as { stats?: { bytesRead: number; bytesWritten: number }; swept?: { bytes: number }; throttle?: { yieldWaitMs: number; yieldsCut: number } };
      });
      scrub.catch(() => undefined); // a failing scrub is reported below, once fio is done (not an unhandled rejection meanwhile)
      const withScrub = await runFio(file, w, fioOpts);
      const fioSecs = (performance.now() - t0) / 1000;
      const r = await scrub;
      // fio alone once more: the ratio is to the mean of the runs before and after (the read cache warms, the machine drifts)
      const after: FioResult = await runFio(file, w, fioOpts);
      const overlap = Math.min(1, (Number.isNaN(scrubSecs) ? fioSecs : scrubSecs) / fioSecs);
      const a = w.unit === 'IOPS' ? (alone.iops + after.iops) / 2 : (alone.mbps + after.mbps) / 2;
      const b = w.unit === 'IOPS' ? withScrub.iops : withScrub.mbps;
      const mb = (x: number | undefined): string => ((x ?? 0) / MiB).toFixed(1);
      console.log(`  ${w.label}: alone ${a.toFixed(0)} ${w.unit} (mean of a run before and one after; ${alone.latMeanUs.toFixed(0)}/${after.latMeanUs.toFixed(0)} µs), during a scrub ${b.toFixed(0)} ${w.unit} ` +
        `(mean ${withScrub.latMeanUs.toFixed(0)} µs): ratio ${(b / a).toFixed(2)}; the scrub took ${scrubSecs.toFixed(1)} s ` +
        `(overlapping ${(overlap * 100).toFixed(0)}% of the fio run), read ${mb(r.stats?.bytesRead)} MiB, wrote ${mb(r.stats?.bytesWritten)} MiB, ` +
        `freed ${mb(r.swept?.bytes)} MiB, backed off ${((r.throttle?.yieldWaitMs ?? 0) / 1000).toFixed(1)} s (${r.throttle?.yieldsCut ?? 0} calls made after the longest back-off)`);
    }
  } finally {
    process.off('SIGINT', stop);
    await target.stop();
  }
}

try {
  await main();
  await mountPart();
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
