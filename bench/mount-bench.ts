/**
 * `npm run bench`: fio through the vpoolfs mount, through a do-nothing passthrough FUSE filesystem on
 * fuse-native with the same mount options, and on the local disk, in the same run (issue 3, "Speed").
 * Prints, per workload, the median figure of each target and the ratios vpoolfs/passthrough and
 * vpoolfs/local; writes a JSON summary to bench/results/mount-latest.json.
 *
 *   node dist/bench/mount-bench.js [--runtime S] [--ramp S] [--size 256M] [--runs 3]
 *        [--only NAME,PREFIX…] [--targets vpoolfs,passthrough,local] [--dir BASE] [--out FILE]
 *
 * Each flag also reads an environment variable (VPOOLFS_BENCH_RUNTIME, _RAMP, _SIZE, _RUNS, _ONLY,
 * _TARGETS, _DIR, _OUT). Runs are interleaved (run 1 of every workload on every target, then run 2 …)
 * so that drift of the machine spreads over all targets alike. A target that cannot start (e.g. the
 * vpoolfs CLI not built yet) is reported and skipped; the others still run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { WORKLOADS, currentFioPid, figure, fioVersion, layOut, median, runFio, type FioResult, type Workload } from './fio.js';
import { TARGET_NAMES, makeTarget, type Target, type TargetName } from './targets.js';

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
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runtime: { type: 'string' }, ramp: { type: 'string' }, size: { type: 'string' }, runs: { type: 'string' },
      only: { type: 'string' }, targets: { type: 'string' }, dir: { type: 'string' }, out: { type: 'string' },
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
  // A full name picks that workload alone; anything else is a prefix (`randwrite` = all three).
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
const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a !== undefined && b !== undefined && b > 0 ? a / b : undefined;

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const root = fs.realpathSync(fs.mkdtempSync(path.join(o.base, 'vpoolfs-bench-')));
  const file = 'fio.dat';
  const results = new Map<string, Map<string, FioResult[]>>(); // workload -> target -> runs
  const status: Record<string, TargetStatus> = {};
  const live: Target[] = [];
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  process.stderr.write(`bench: ${o.workloads.length} workloads x ${o.targets.join(', ')} x ${o.runs} runs, `
    + `${o.size} file, ${o.rampSec}+${o.runtimeSec} s each, under ${root}\n`);
  try {
    for (const name of o.targets) {
      const t = makeTarget(name, root);
      try {
        await t.start();
        await layOut(path.join(t.dir, file), o.size);
        live.push(t);
        status[name] = { ok: true };
        process.stderr.write(`bench: ${name} ready at ${t.dir}\n`);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        status[name] = { ok: false, error: msg };
        process.stderr.write(`bench: target ${name} skipped: ${msg}\n`);
        await t.stop();
      }
      if (interrupted) throw new Error('interrupted');
    }
    for (let run = 1; run <= o.runs; run++) {
      for (const w of o.workloads) {
        for (const t of live) {
          if (interrupted) throw new Error('interrupted');
          const r = await runFio(path.join(t.dir, file), w, o);
          const byTarget = results.get(w.name) ?? new Map<string, FioResult[]>();
          results.set(w.name, byTarget);
          byTarget.set(t.name, [...(byTarget.get(t.name) ?? []), r]);
          process.stderr.write(`bench: run ${run}/${o.runs} ${w.name.padEnd(20)} ${t.name.padEnd(12)} `
            + `${fmt(figure(w, r), w.unit)} ${w.unit}, mean lat ${r.latMeanUs.toFixed(0)} us\n`);
        }
      }
    }
  } finally {
    for (const t of [...live].reverse()) {
      await t.stop();
      if (t.stopped) status[t.name] = { ...status[t.name]!, stop: t.stopped };
    }
    // Keep the children's logs next to the summary: they say what a slow target was waiting for.
    for (const t of live) {
      if (!t.log || !fs.existsSync(t.log)) continue;
      fs.mkdirSync(path.dirname(o.out), { recursive: true });
      fs.copyFileSync(t.log, path.join(path.dirname(o.out), `mount-latest-${t.name}.log`));
    }
    fs.rmSync(root, { recursive: true, force: true });
  }
  report(o, results, status, started, loadBefore);
}

function report(o: Options, results: Map<string, Map<string, FioResult[]>>,
  status: Record<string, TargetStatus>, started: string, loadBefore: number[]): void {
  const names = o.targets;
  const rows: string[][] = [['workload', 'unit', ...names, 'vpoolfs/passthrough', 'vpoolfs/local']];
  const summary: unknown[] = [];
  for (const w of o.workloads) {
    const byTarget = results.get(w.name);
    const med: Partial<Record<string, number>> = {};
    const detail: Record<string, unknown> = {};
    for (const n of names) {
      const runs = byTarget?.get(n);
      if (!runs) continue;
      med[n] = median(runs.map((r) => figure(w, r)));
      detail[n] = {
        median: med[n], runs: runs.map((r) => figure(w, r)),
        latMeanUs: median(runs.map((r) => r.latMeanUs)), latP99Us: median(runs.map((r) => r.latP99Us)),
      };
    }
    const vp = ratio(med.vpoolfs, med.passthrough);
    const vl = ratio(med.vpoolfs, med.local);
    rows.push([w.label, w.unit, ...names.map((n) => fmt(med[n], w.unit)), vp?.toFixed(2) ?? '-', vl?.toFixed(2) ?? '-']);
    summary.push({ name: w.name, label: w.label, unit: w.unit, targets: detail,
      ratios: { vpoolfsToPassthrough: vp ?? null, vpoolfsToLocal: vl ?? null } });
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const load = (l: number[]): string => l.map((x) => x.toFixed(1)).join(' ');
  process.stdout.write(`\nmedians of ${o.runs} runs, ${o.rampSec}+${o.runtimeSec} s each, ${o.size} file; `
    + `load average ${load(loadBefore)} before, ${load(os.loadavg())} after (${os.cpus().length} CPUs)`
    + `${o.runs < 3 ? '\nfewer than 3 runs: a smoke test, not figures to quote' : ''}\n`);
  process.stdout.write(`${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of rows.slice(1)) process.stdout.write(`${line(r)}\n`);
  for (const [n, s] of Object.entries(status)) {
    if (!s.ok) process.stdout.write(`\n${n}: not measured: ${s.error}\n`);
    if (s.stop) process.stdout.write(`${n}: stopped by SIGTERM with ${s.stop.how} after ${(s.stop.ms / 1000).toFixed(1)} s\n`);
  }
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  void fioVersion().then((fio) => {
    fs.writeFileSync(o.out, `${JSON.stringify({
      started, finished: new Date().toISOString(), host: os.hostname(), kernel: os.release(), cpus: os.cpus().length,
      node: process.version, fio, loadavg: { before: loadBefore, after: os.loadavg() },
      options: { runtimeSec: o.runtimeSec, rampSec: o.rampSec, size: o.size, runs: o.runs, base: o.base },
      targets: status, workloads: summary,
    }, null, 2)}\n`);
    process.stdout.write(`\nsummary written to ${o.out}\n`);
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
