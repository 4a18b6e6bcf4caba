/**
 * `npm run bench:nbd` (issue 14, "Speed"): the same vDisks of one vpoolfs daemon through its FUSE mount
 * (fio libaio O_DIRECT on the file) and through its NBD unix socket (fio's nbd engine), in the same run,
 * plus qemu-nbd serving a raw file on the local disk as the reference for what NBD itself allows here.
 * Workloads: 4 KiB random write/read at qd 1 and 16 x 4 jobs (each job its own NBD connection), 1 MiB
 * sequential write/read. Prints IOPS (MB/s for 1 MiB) and the serving process's CPU µs per I/O, the ratios
 * NBD/FUSE, and the aim (NBD >= 1.3x the FUSE IOPS at <= 0.5x its CPU per I/O) met or not.
 *
 *   node dist/bench/vpool/nbd.js [--runtime S] [--ramp S] [--size 256M] [--runs 1] [--only PREFIX,…] [--dir BASE] [--out FILE]
 *
 * (or VPOOLFS_BENCH_RUNTIME, _RAMP, _SIZE, _RUNS, _ONLY, _DIR, _OUT).
 *
 * Runs are interleaved (every path for one workload, then the next workload; FUSE and NBD swap order from
 * one run to the next), and each vpoolfs measurement starts once the vDisk's upload backlog has drained. Reuses bench/shared/fio.ts (the
 * workloads, the file layout, one fio run), bench/shared/proc-cpu.ts (CPU per I/O) and bench/shared/mount-target.ts (the
 * vpoolfs mount as a child process).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FILE_NAMES, WORKLOADS, figure, median, prepareFiles, runFio, type FioResult, type Workload } from '../shared/fio.js';
import { cpuPerIo, cpuUs } from '../shared/proc-cpu.js';
import { DEFAULT_CLI, vpoolfsTarget } from '../shared/mount-target.js';

const NAMES = ['randwrite-4k-qd1', 'randwrite-4k-qd16x4', 'randread-4k-qd1', 'randread-4k-qd16x4', 'seqwrite-1m', 'seqread-1m'];
const AIM_IOPS = 1.3;
const AIM_CPU = 0.5;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same workload through an NBD URI: fio's nbd engine instead of libaio on a file. */
function overNbd(w: Workload, uri: string): Workload {
  return { ...w, args: [...w.args.filter((a) => a !== '--ioengine=libaio' && a !== '--direct=1'), '--ioengine=nbd', `--uri=${uri}`] };
}

/** qemu-nbd serving one raw file on a unix socket (the reference), a child process. */
async function startQemuNbd(file: string, sock: string, log: string): Promise<ChildProcess> {
  const out = fs.openSync(log, 'a');
  const child = spawn('qemu-nbd', ['-f', 'raw', '-x', path.basename(file), '-k', sock, '--persistent', '--shared=16', '--cache=none', '--aio=native', file],
    { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) {
    if (child.exitCode !== null) throw new Error(`qemu-nbd exited: ${fs.readFileSync(log, 'utf8').slice(-500)}`);
    await sleep(50);
  }
  if (!fs.existsSync(sock)) throw new Error('qemu-nbd did not create its socket');
  return child;
}

/**
 * Waits (at most 120 s) until the vDisk at `file` has nothing waiting for upload: the upload of what one
 * path just wrote must not eat into the next path's CPU and disk time.
 */
async function settle(file: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const r = spawnSync('getfattr', ['--only-values', '-n', 'user.vdisk.info', file], { encoding: 'utf8' });
    const backlog = r.status === 0 ? (JSON.parse(r.stdout) as { uploadBacklog: { scos: number; tlogs: number } }).uploadBacklog : undefined;
    if (backlog === undefined || backlog.scos + backlog.tlogs === 0) return;
    await sleep(200);
  }
}

interface Row {
  fuse?: FioResult & { cpu: number };
  nbd?: FioResult & { cpu: number };
  qemu?: FioResult & { cpu: number };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: {
    runtime: { type: 'string' }, ramp: { type: 'string' }, size: { type: 'string' }, runs: { type: 'string' }, dir: { type: 'string' }, out: { type: 'string' }, only: { type: 'string' },
  } });
  const env = (k: string) => process.env[`VPOOLFS_BENCH_${k}`];
  const o = {
    runtimeSec: Number(values.runtime ?? env('RUNTIME') ?? 5),
    rampSec: Number(values.ramp ?? env('RAMP') ?? 1),
    size: values.size ?? env('SIZE') ?? '256M',
    runs: Number(values.runs ?? env('RUNS') ?? 1),
  };
  const outFile = values.out ?? env('OUT') ?? path.join(repoRoot, 'bench', 'results', 'nbd-latest.json');
  const only = (values.only ?? env('ONLY'))?.split(',').map((x) => x.trim());
  const workloads = NAMES.filter((n) => !only || only.some((x) => n.startsWith(x))).map((n) => WORKLOADS.find((w) => w.name === n)!);
  if (workloads.length === 0) throw new Error(`--only matches none of ${NAMES.join(', ')}`);
  const root = fs.realpathSync(fs.mkdtempSync(path.join(values.dir ?? env('DIR') ?? os.tmpdir(), 'vpoolfs-bench-nbd-')));
  const sock = path.join(root, 'nbd.sock');
  const vp = vpoolfsTarget('vpoolfs', root, DEFAULT_CLI, ['--nbd', `unix:${sock}`]);
  const local = path.join(root, 'local');
  fs.mkdirSync(local);
  const qemu: ChildProcess[] = [];
  const results = new Map<string, Row[]>();
  const loadBefore = os.loadavg();
  process.stderr.write(`bench:nbd: ${workloads.length} workloads x fuse, nbd, qemu-nbd x ${o.runs} runs, ${o.size}, ${o.rampSec}+${o.runtimeSec} s each, under ${root}\n`);
  try {
    await vp.start();
    await prepareFiles(vp.dir, o.size, workloads);
    await prepareFiles(local, o.size, workloads);
    const qsock = (f: string) => path.join(root, `qemu-${f}.sock`);
    for (const f of new Set(workloads.map((w) => FILE_NAMES[w.file]))) qemu.push(await startQemuNbd(path.join(local, f), qsock(f), path.join(root, 'qemu-nbd.log')));
    const qpid = (f: string) => qemu[[...new Set(workloads.map((w) => FILE_NAMES[w.file]))].indexOf(f)]!.pid!;
    const measure = async (pid: number, file: string, w: Workload) => {
      const before = cpuUs(pid);
      const r = await runFio(file, w, o);
      return { ...r, cpu: cpuPerIo(cpuUs(pid) - before, r.iops, o) };
    };
    for (let run = 1; run <= o.runs; run++) {
      for (const w of workloads) {
        const f = FILE_NAMES[w.file];
        const row: Row = {};
        // FUSE first in odd runs, NBD first in even ones; each after the vDisk's uploads have drained
        const sides = [
          async () => { await settle(path.join(vp.dir, f)); row.fuse = await measure(vp.pid!, path.join(vp.dir, f), w); },
          async () => { await settle(path.join(vp.dir, f)); row.nbd = await measure(vp.pid!, path.join(root, 'nbd-job'), overNbd(w, `nbd+unix:///${f}?socket=${sock}`)); },
        ];
        for (const side of run % 2 ? sides : sides.reverse()) await side();
        row.qemu = await measure(qpid(f), path.join(root, 'qemu-job'), overNbd(w, `nbd+unix:///${f}?socket=${qsock(f)}`));
        results.set(w.name, [...(results.get(w.name) ?? []), row]);
        const show = (x: FioResult & { cpu: number }) => `${figure(w, x).toFixed(0)} ${w.unit} ${x.cpu.toFixed(1)} µs CPU/IO`;
        process.stderr.write(`bench:nbd: run ${run} ${w.name.padEnd(20)} fuse ${show(row.fuse!)} | nbd ${show(row.nbd!)} | qemu-nbd ${show(row.qemu)}\n`);
      }
    }
  } finally {
    for (const q of qemu) q.kill('SIGTERM');
    await vp.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }

  const out = process.stdout;
  out.write(`\nmedians of ${o.runs} run(s), ${o.rampSec}+${o.runtimeSec} s each, ${o.size}; load average ${loadBefore.map((x) => x.toFixed(1)).join(' ')} before, `
    + `${os.loadavg().map((x) => x.toFixed(1)).join(' ')} after (${os.cpus().length} CPUs). CPU: µs of the serving process per I/O\n`
    + 'aim (issue 14): NBD >= 1.3x the FUSE figure at <= 0.5x its CPU per I/O\n\n');
  const rows = [['workload', 'unit', 'FUSE', 'CPU', 'NBD', 'CPU', 'NBD/FUSE', 'CPU NBD/FUSE', 'aim', 'qemu-nbd', 'CPU']];
  const summary: Record<string, unknown> = {};
  for (const w of workloads) {
    const rs = results.get(w.name) ?? [];
    const m = (k: keyof Row, f: (x: FioResult & { cpu: number }) => number) => median(rs.map((r) => r[k]).filter(Boolean).map((x) => f(x!)));
    const fuse = m('fuse', (x) => figure(w, x));
    const nbd = m('nbd', (x) => figure(w, x));
    const qemuF = m('qemu', (x) => figure(w, x));
    const cf = m('fuse', (x) => x.cpu);
    const cn = m('nbd', (x) => x.cpu);
    const cq = m('qemu', (x) => x.cpu);
    const met = nbd / fuse >= AIM_IOPS && cn / cf <= AIM_CPU;
    summary[w.name] = { unit: w.unit, fuse, nbd, qemuNbd: qemuF, cpuFuse: cf, cpuNbd: cn, cpuQemuNbd: cq, ratio: nbd / fuse, cpuRatio: cn / cf, aimMet: met };
    rows.push([w.name, w.unit, fuse.toFixed(0), cf.toFixed(1), nbd.toFixed(0), cn.toFixed(1), (nbd / fuse).toFixed(2), (cn / cf).toFixed(2), met ? 'met' : 'not met', qemuF.toFixed(0), cq.toFixed(1)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) out.write(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ') + '\n');
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), options: o, loadBefore, loadAfter: os.loadavg(), workloads: summary }, null, 2) + '\n');
  out.write(`\nsummary written to ${outFile}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:nbd failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
