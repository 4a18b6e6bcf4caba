/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. the daemon `node --cpu-prof --cpu-prof-dir=D
 * dist/tools/cli.js mount …` stopped with SIGTERM; each thread writes its own file): self time by function,
 * and with --callers NAME where NAME's self time comes from (its callers, --depth frames up). Times are
 * the profiler's samples of one thread (wall clock while it runs, `(idle)` while it waits), so on a busy
 * machine they include time the thread was runnable but not running: compare shares, alongside the CPU
 * per I/O from /proc (bench/shared/proc-cpu.ts).
 *
 *   node dist/bench/mount/cpuprofile-top.js FILE.cpuprofile [--top 25] [--callers writeBuffers] [--depth 5]
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

function label(n: ProfileNode): string {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string' }, callers: { type: 'string' }, depth: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new Error('usage: cpuprofile-top.js FILE.cpuprofile [--top N] [--callers NAME] [--depth N]');
  const p = JSON.parse(fs.readFileSync(positionals[0]!, 'utf8')) as Profile;
  const top = Number(values.top ?? 25);
  const depth = Number(values.depth ?? 5);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const sums = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!)!;
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    let key: string;
    if (values.callers === undefined) {
      key = label(n);
    } else {
      if (n.callFrame.functionName !== values.callers) continue;
      const chain: string[] = [];
      for (let id: number | undefined = n.id; id !== undefined && chain.length < depth; id = parent.get(id)) chain.push(label(byId.get(id)!));
      key = chain.join(' < ');
    }
    sums.set(key, (sums.get(key) ?? 0) + dt);
  }
  process.stdout.write(`${positionals[0]}: ${(total / 1e3).toFixed(0)} ms sampled\n`);
  for (const [k, us] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}\n`);
  }
}

main();
