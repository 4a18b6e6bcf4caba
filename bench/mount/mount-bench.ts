/**
 * `npm run bench`: fio through the vpoolfs mount (its default FUSE engine, and the fuse-native engine)
 * and through three references measured in the same run: a multi-threaded libfuse3 low-level passthrough
 * in C (the ceiling of FUSE here), a do-nothing passthrough on fuse-native, and the local disk (issues 3
 * and 10, "Speed"). Prints, per job, each target's median figure, its ratios to the three references and
 * the CPU time its daemon spent per I/O, then the aims of issue 10 with met / not met; writes a JSON
 * summary to bench/results/mount-latest.json.
 *
 *   node dist/bench/mount/mount-bench.js [--runtime S] [--ramp S] [--size 256M] [--runs 3]
 *        [--only NAME,PREFIX…] [--targets vpoolfs,vpoolfs-fuse-native,c-passthrough,fn-passthrough,local]
 *        [--dir BASE] [--out FILE] [--vpoolfs-cli FILE]
 *
 * Each flag also reads an environment variable (VPOOLFS_BENCH_RUNTIME, _RAMP, _SIZE, _RUNS, _ONLY,
 * _TARGETS, _DIR, _OUT, _VPOOLFS_CLI). `--vpoolfs-cli` runs another build's CLI (default: this build's). Runs are interleaved (run 1 of every workload on every target, then run 2 …, the
 * order of the targets rotating from one run to the next) so that drift of the machine spreads over all
 * targets alike. A target that cannot start (e.g. an engine option this build does not have) is reported
 * and skipped; the others still run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { FILE_NAMES, WORKLOADS, currentFioPid, figure, fioVersion, median, prepareFiles, runFio, type FioResult, type Workload } from '../shared/fio.js';
import { cpuPerIo, cpuUs } from '../shared/proc-cpu.js';
import { DEFAULT_CLI, type Target } from '../shared/mount-target.js';
import { REFERENCES, TARGET_NAMES, VPOOLFS_TARGETS, makeTarget, type TargetName } from './targets.js';

interface TargetStatus {
  ok: boolean;
  error?: string;
  /** How the child ended on SIGTERM (`exit 0` = clean) and how long that took. */
  stop?: { how: string; ms: number };
}

interface Options {
  runtimeSec: number;
  rampSec: number;
  size: string;
  runs: number;
  workloads: Workload[];
  targets: TargetName[];
  base: string;
  out: string;
  cli: string;
}

/** One fio run on one target, with the CPU its daemon spent per I/O (undefined for the local disk). */
interface Run extends FioResult {
  cpuUsPerIo?: number;
}

/** Aims of issue 10: each vpoolfs figure at least 0.8 of the C passthrough's ... */
const AIM_TO_C = 0.8;
/** ... and the 1 MiB read of a vDisk overwritten at random at least half of the same read after sequential writes. */
const AIM_OVERWRITTEN = 0.5;
const OVERWRITTEN = { read: 'seqread-1m-overwritten', base: 'seqread-1m' };

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runtime: { type: 'string' }, ramp: { type: 'string' }, size: { type: 'string' }, runs: { type: 'string' },
      only: { type: 'string' }, targets: { type: 'string' }, dir: { type: 'string' }, out: { type: 'string' },
      'vpoolfs-cli': { type: 'string' },
    },
  });
  const env = (k: string): string | undefined => process.env[`VPOOLFS_BENCH_${k}`];
  const num = (v: string | undefined, d: number, name: string, min: number): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${v}`);
    return n;
  };
  const only = (values.only ?? env('ONLY'))?.split(',').map((s) => s.trim()).filter(Boolean);
  // A full name picks that workload alone; anything else is a prefix (`randwrite` = all of them).
  const picks = (w: Workload, o: string): boolean => w.name === o || (!WORKLOADS.some((x) => x.name === o) && w.name.startsWith(o));
  const workloads = only ? WORKLOADS.filter((w) => only.some((o) => picks(w, o))) : WORKLOADS;
  if (workloads.length === 0) throw new Error(`--only matches no workload; known: ${WORKLOADS.map((w) => w.name).join(', ')}`);
  const targets = (values.targets ?? env('TARGETS') ?? TARGET_NAMES.join(',')).split(',').map((s) => s.trim());
  for (const t of targets) {
    if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`unknown target ${t}; known: ${TARGET_NAMES.join(', ')}`);
  }
  const size = values.size ?? env('SIZE') ?? '256M';
  if (!/^\d+[kKmMgG]?$/.test(size)) throw new Error(`--size must look like 256M, got ${size}`);
  return {
    runtimeSec: num(values.runtime ?? env('RUNTIME'), 5, 'runtime', 1),
    rampSec: num(values.ramp ?? env('RAMP'), 1, 'ramp', 0),
    size,
    runs: Math.floor(num(values.runs ?? env('RUNS'), 3, 'runs', 1)),
    workloads,
    targets: targets as TargetName[],
    base: values.dir ?? env('DIR') ?? os.tmpdir(),
    out: values.out ?? env('OUT') ?? path.join(repoRoot, 'bench', 'results', 'mount-latest.json'),
    cli: path.resolve(values['vpoolfs-cli'] ?? env('VPOOLFS_CLI') ?? DEFAULT_CLI),
  };
}

/** Stops the running fio and marks the benchmark as interrupted (the finally blocks clean up). */
let interrupted = false;
function onSignal(sig: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  process.stderr.write(`bench: ${sig}, stopping\n`);
  const pid = currentFioPid();
  if (pid !== undefined) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  }
}

const fmt = (x: number | undefined, unit: string): string =>
  x === undefined || !Number.isFinite(x) ? '-' : unit === 'IOPS' ? Math.round(x).toString() : x.toFixed(0);
const fmtRatio = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : undefined;

/** One fio run of `w` on `t`, with the CPU time of t's daemon over it. */
async function measure(t: Target, w: Workload, o: Options): Promise<Run> {
  const before = t.pid !== undefined ? cpuUs(t.pid) : undefined;
  const r = await runFio(path.join(t.dir, FILE_NAMES[w.file]), w, o);
  if (t.pid === undefined || before === undefined) return r;
  return { ...r, cpuUsPerIo: cpuPerIo(cpuUs(t.pid) - before, r.iops, o) };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const root = fs.realpathSync(fs.mkdtempSync(path.join(o.base, 'vpoolfs-bench-')));
  const results = new Map<string, Map<string, Run[]>>(); // workload -> target -> runs
  const status: Record<string, TargetStatus> = {};
  const live: Target[] = [];
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  process.stderr.write(`bench: ${o.workloads.length} workloads x ${o.targets.join(', ')} x ${o.runs} runs, `
    + `${o.size} files, ${o.rampSec}+${o.runtimeSec} s each, under ${root}; vpoolfs is ${o.cli}\n`);
  try {
    for (const name of o.targets) {
      const t = makeTarget(name, root, o.cli);
      try {
        await t.start();
        const t0 = Date.now();
        await prepareFiles(t.dir, o.size, o.workloads);
        live.push(t);
        status[name] = { ok: true };
        process.stderr.write(`bench: ${name} ready at ${t.dir} (files laid out in ${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        status[name] = { ok: false, error: msg };
        process.stderr.write(`bench: target ${name} skipped: ${msg}\n`);
        await t.stop();
      }
      if (interrupted) throw new Error('interrupted');
    }
    for (let run = 1; run <= o.runs; run++) {
      // Rotate the order of the targets from run to run: none always runs right after the same neighbour.
      const order = live.map((_, i) => live[(i + run - 1) % live.length]!);
      for (const w of o.workloads) {
        for (const t of order) {
          if (interrupted) throw new Error('interrupted');
          const r = await measure(t, w, o);
          const byTarget = results.get(w.name) ?? new Map<string, Run[]>();
          results.set(w.name, byTarget);
          byTarget.set(t.name, [...(byTarget.get(t.name) ?? []), r]);
          process.stderr.write(`bench: run ${run}/${o.runs} ${w.name.padEnd(22)} ${t.name.padEnd(19)} `
            + `${fmt(figure(w, r), w.unit).padStart(7)} ${w.unit}, mean lat ${r.latMeanUs.toFixed(0)} us`
            + `${r.cpuUsPerIo !== undefined ? `, ${r.cpuUsPerIo.toFixed(1)} us CPU/IO` : ''}\n`);
        }
      }
    }
  } finally {
    for (const t of [...live].reverse()) {
      await t.stop();
      if (t.stopped) status[t.name] = { ...status[t.name]!, stop: t.stopped };
    }
    // Keep the children's logs next to the summary: they say what a slow target was waiting for.
    for (const name of o.targets) {
      const log = path.join(root, name, `${name}.log`);
      if (!fs.existsSync(log)) continue;
      fs.mkdirSync(path.dirname(o.out), { recursive: true });
      fs.copyFileSync(log, path.join(path.dirname(o.out), `mount-latest-${name}.log`));
    }
    fs.rmSync(root, { recursive: true, force: true });
  }
  await report(o, results, status, started, loadBefore);
}

interface TargetSummary {
  median: number;
  runs: number[];
  latMeanUs: number;
  latP99Us: number;
  cpuUsPerIo: number | null;
  /** CPU per I/O over the C passthrough's. */
  cpuToC: number | null;
  toC: number | null;
  toFn: number | null;
  toLocal: number | null;
}

/** Median CPU µs per I/O of a target's runs (undefined without a serving process). */
function cpuMedian(runs: Run[] | undefined): number | undefined {
  const xs = (runs ?? []).map((r) => r.cpuUsPerIo).filter((x): x is number => x !== undefined && Number.isFinite(x));
  return xs.length ? median(xs) : undefined;
}

async function report(o: Options, results: Map<string, Map<string, Run[]>>,
  status: Record<string, TargetStatus>, started: string, loadBefore: number[]): Promise<void> {
  const out = process.stdout;
  const load = (l: number[]): string => l.map((x) => x.toFixed(1)).join(' ');
  out.write(`\nmedians of ${o.runs} runs, ${o.rampSec}+${o.runtimeSec} s each, ${o.size} files; `
    + `load average ${load(loadBefore)} before, ${load(os.loadavg())} after (${os.cpus().length} CPUs)`
    + `${o.runs < 3 ? '\nfewer than 3 runs: a smoke test, not figures to quote' : ''}\n`
    + `/C, /fn, /local: ratio of the median to that of c-passthrough, fn-passthrough, local; `
    + `CPU: µs of the serving process per I/O (median), xC: that over c-passthrough's (a figure the machine's load moves far less)\n`
    + `${o.cli !== DEFAULT_CLI ? `vpoolfs targets run ${o.cli}\n` : ''}`);
  const summary: Record<string, { label: string; unit: string; targets: Record<string, TargetSummary> }> = {};
  for (const w of o.workloads) {
    const byTarget = results.get(w.name);
    const med = (n: string): number | undefined => {
      const runs = byTarget?.get(n);
      return runs ? median(runs.map((r) => figure(w, r))) : undefined;
    };
    const rows: string[][] = [['target', `${w.unit} (median)`, 'runs', '/C', '/fn', '/local', 'CPU µs/IO', 'CPU xC', 'mean lat µs']];
    const targets: Record<string, TargetSummary> = {};
    for (const n of o.targets) {
      const runs = byTarget?.get(n);
      if (!runs) {
        rows.push([n, status[n]?.ok === false ? 'not measured' : '-', '', '', '', '', '', '', '']);
        continue;
      }
      const m = med(n)!;
      const s: TargetSummary = {
        median: m, runs: runs.map((r) => figure(w, r)),
        latMeanUs: median(runs.map((r) => r.latMeanUs)), latP99Us: median(runs.map((r) => r.latP99Us)),
        cpuUsPerIo: cpuMedian(runs) ?? null,
        cpuToC: ratio(cpuMedian(runs), cpuMedian(byTarget?.get(REFERENCES.c))) ?? null,
        toC: ratio(m, med(REFERENCES.c)) ?? null, toFn: ratio(m, med(REFERENCES.fn)) ?? null, toLocal: ratio(m, med(REFERENCES.local)) ?? null,
      };
      targets[n] = s;
      rows.push([n, fmt(m, w.unit), s.runs.map((x) => fmt(x, w.unit)).join(' '), fmtRatio(s.toC ?? undefined),
        fmtRatio(s.toFn ?? undefined), fmtRatio(s.toLocal ?? undefined), s.cpuUsPerIo === null ? '-' : s.cpuUsPerIo.toFixed(1),
        fmtRatio(s.cpuToC ?? undefined),
        s.latMeanUs.toFixed(0)]);
    }
    summary[w.name] = { label: w.label, unit: w.unit, targets };
    out.write(`\n${w.label} — ${w.name}\n`);
    printTable(rows);
  }

  // The aims of issue 10, for each vpoolfs target.
  const judged = VPOOLFS_TARGETS.filter((n) => o.targets.includes(n));
  const aims: Array<{ aim: string; target: string; value: number | null; min: number; met: boolean | null }> = [];
  const rows: string[][] = [['aim', ...judged]];
  for (const w of o.workloads) {
    const aim = `${w.name}: vpoolfs / C >= ${AIM_TO_C}`;
    const cells = judged.map((n) => {
      const v = summary[w.name]?.targets[n]?.toC ?? null;
      aims.push({ aim, target: n, value: v, min: AIM_TO_C, met: v === null ? null : v >= AIM_TO_C });
      return v === null ? 'not measured' : `${v.toFixed(2)} ${v >= AIM_TO_C ? 'met' : 'not met'}`;
    });
    rows.push([aim, ...cells]);
  }
  if (summary[OVERWRITTEN.read] && summary[OVERWRITTEN.base]) {
    const aim = `${OVERWRITTEN.read} / ${OVERWRITTEN.base} >= ${AIM_OVERWRITTEN}`;
    const cells = judged.map((n) => {
      const v = ratio(summary[OVERWRITTEN.read]!.targets[n]?.median, summary[OVERWRITTEN.base]!.targets[n]?.median) ?? null;
      aims.push({ aim, target: n, value: v, min: AIM_OVERWRITTEN, met: v === null ? null : v >= AIM_OVERWRITTEN });
      return v === null ? 'not measured' : `${v.toFixed(2)} ${v >= AIM_OVERWRITTEN ? 'met' : 'not met'}`;
    });
    rows.push([aim, ...cells]);
    // The same ratio for the references says what the layout costs where it should cost nothing.
    const refs = o.targets.filter((n) => !judged.includes(n)).map((n) => {
      const v = ratio(summary[OVERWRITTEN.read]!.targets[n]?.median, summary[OVERWRITTEN.base]!.targets[n]?.median);
      return `${n} ${fmtRatio(v)}`;
    });
    if (refs.length) rows.push([`  (same ratio for ${refs.join(', ')})`, ...judged.map(() => '')]);
  }
  out.write('\naims of issue 10\n');
  printTable(rows);

  for (const [n, s] of Object.entries(status)) {
    if (!s.ok) out.write(`\n${n}: not measured: ${s.error}\n`);
    if (s.stop) out.write(`${n}: stopped by SIGTERM with ${s.stop.how} after ${(s.stop.ms / 1000).toFixed(1)} s\n`);
  }
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  fs.writeFileSync(o.out, `${JSON.stringify({
    started, finished: new Date().toISOString(), host: os.hostname(), kernel: os.release(), cpus: os.cpus().length,
    node: process.version, fio: await fioVersion(), loadavg: { before: loadBefore, after: os.loadavg() },
    options: { runtimeSec: o.runtimeSec, rampSec: o.rampSec, size: o.size, runs: o.runs, base: o.base, targets: o.targets, vpoolfsCli: o.cli },
    targets: status,
    workloads: o.workloads.map((w) => ({ name: w.name, args: w.args, file: FILE_NAMES[w.file], ...summary[w.name] })),
    aims,
  }, null, 2)}\n`);
  out.write(`\nsummary written to ${o.out}\n`);
}

/** Left-aligned first column, the others right-aligned. */
function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  process.stdout.write(`${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of rows.slice(1)) process.stdout.write(`${line(r)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
