/**
 * Several `npm run bench` summaries (bench/results/mount-latest.json, copied aside after each run) folded
 * into one table: for each job and target, the ratio to the C passthrough taken run by run (run i of a
 * target and run i of the C passthrough ran in the same round, a minute apart at most), then the median
 * of those ratios over every round of every invocation; the median over the invocations of the CPU per I/O
 * over the C passthrough's; and the aims of issue 10 with met / not met. Ratios are paired within a round
 * before any median is taken because the machine's load moves the targets of one round alike but moves
 * rounds of different minutes by ±2× and more.
 *
 *   node dist/bench/mount/mount-medians.js run1.json run2.json run3.json [--markdown]
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';

interface TargetFigures { median: number; runs: number[]; toC: number | null; cpuToC: number | null; cpuUsPerIo: number | null }
interface WorkloadSummary { name: string; label: string; unit: string; targets: Record<string, TargetFigures> }
interface Summary { started: string; loadavg: unknown; workloads: WorkloadSummary[] }

const AIM_TO_C = 0.8;
const AIM_OVERWRITTEN = 0.5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { markdown: { type: 'boolean' } } });
  if (positionals.length === 0) throw new Error('usage: mount-medians.js SUMMARY.json… [--markdown]');
  const runs = positionals.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as Summary);
  const names = runs[0].workloads.map((w) => w.name);
  const targets = Object.keys(runs[0].workloads[0].targets);
  const of = (r: Summary, job: string, target: string): TargetFigures | undefined => r.workloads.find((w) => w.name === job)?.targets[target];
  const med = (job: string, target: string, pick: (t: TargetFigures) => number | null): number | null => {
    const xs = runs.map((r) => of(r, job, target)).map((t) => (t === undefined ? null : pick(t))).filter((x): x is number => x !== null && Number.isFinite(x));
    return xs.length === 0 ? null : median(xs);
  };
  /** The median of the run-by-run ratios target / C over every round of every invocation. */
  const paired = (job: string, target: string): number | null => {
    const xs: number[] = [];
    for (const r of runs) {
      const t = of(r, job, target)?.runs;
      const c = of(r, job, 'c-passthrough')?.runs;
      if (t === undefined || c === undefined) continue;
      for (let i = 0; i < Math.min(t.length, c.length); i++) if (c[i] > 0) xs.push(t[i] / c[i]);
    }
    return xs.length === 0 ? null : median(xs);
  };
  const fmt = (x: number | null, d = 2): string => (x === null ? '-' : x.toFixed(d));
  const md = values.markdown === true;
  const head = ['job', 'unit', ...targets.map((t) => `${t} / C`), 'CPU per I/O, vpoolfs / C', 'absolute medians (vpoolfs, C)'];
  console.log(`${runs.length} invocation(s): ${runs.map((r) => r.started).join(', ')}`);
  console.log(md ? `| ${head.join(' | ')} |\n|${head.map(() => ' --- ').join('|')}|` : head.join('\t'));
  for (const job of names) {
    const w = runs[0].workloads.find((x) => x.name === job)!;
    const cells = [w.label, w.unit, ...targets.map((t) => fmt(paired(job, t))), fmt(med(job, 'vpoolfs', (f) => f.cpuToC), 1),
      `${fmt(med(job, 'vpoolfs', (f) => f.median), 0)}, ${fmt(med(job, 'c-passthrough', (f) => f.median), 0)}`];
    console.log(md ? `| ${cells.join(' | ')} |` : cells.join('\t'));
  }
  console.log('\naims of issue 10 (median of the run-by-run ratios):');
  for (const target of targets.filter((t) => t.startsWith('vpoolfs'))) {
    for (const job of names) {
      const r = paired(job, target);
      if (r !== null) console.log(`  ${target} ${job} / C = ${r.toFixed(2)} >= ${AIM_TO_C}: ${r >= AIM_TO_C ? 'met' : 'not met'}`);
    }
    const ow = runs.flatMap((x) => {
      const a = of(x, 'seqread-1m-overwritten', target)?.runs ?? [];
      const b = of(x, 'seqread-1m', target)?.runs ?? [];
      return a.map((v, i) => (b[i] > 0 ? v / b[i] : null)).filter((v): v is number => v !== null);
    });
    if (ow.length > 0) console.log(`  ${target} seqread-1m-overwritten / seqread-1m = ${median(ow).toFixed(2)} >= ${AIM_OVERWRITTEN}: ${median(ow) >= AIM_OVERWRITTEN ? 'met' : 'not met'}`);
  }
}

main();
