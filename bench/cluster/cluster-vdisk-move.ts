/**
 * The per-vDisk move of `npm run bench:cluster` (`--parts vdisk-move`; docs/cluster.md, "Ownership per vDisk"):
 * router A owns the vPool, router B follows it (bench/cluster/cluster-router.ts). One vDisk (`moved.dat`, laid out through
 * A's mount) goes to B and back, --runs times; each round measures
 *
 *   - local I/O: 4 KiB random write and read jobs (bench/shared/fio.ts's workloads) through A's mount while A serves it;
 *   - the handover: `vpoolfs move FILE --to rb`, the time the CLI reports (the owner's steps: its calls held,
 *     the handover in etcd, B opening the vDisk from the backend, routed there);
 *   - the delegate's own mount: the same jobs through B's mount, now served by B itself (no forwarding), and
 *     through A's mount (forwarded by A to B over the router link: loopback TCP);
 *   - the return: `vpoolfs move FILE --to ra` (B ships and closes it, A takes it back and rebuilds it).
 *
 * Medians over the rounds; the ratios are to local I/O on A.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Router } from './cluster-router.js';
import { layOut, median, runFio, WORKLOADS, type FioOptions } from '../shared/fio.js';

const CLI = fileURLToPath(new URL('../../tools/cli.js', import.meta.url));
const FILE = 'moved.dat';
const JOBS = ['randwrite-4k-qd1', 'randwrite-4k-qd16x4', 'randread-4k-qd1', 'randread-4k-qd16x4'];

export interface VDiskMoveResult {
  handoverMs: number[];
  returnMs: number[];
  rows: Array<{ workload: string; local: number; delegate: number; viaOwner: number; delegateRatio: number; viaOwnerRatio: number }>;
}

/** `vpoolfs move FILE --to ROUTER`; the time the CLI reports (`… after N ms`). */
function move(file: string, to: string, registry: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'move', file, '--to', to, '--registry', registry], (err, stdout, stderr) => {
      const ms = /after (\d+) ms/.exec(String(stdout));
      if (err !== null || ms === null) reject(new Error(`vpoolfs move ${file} --to ${to} failed: ${String(stdout)}${String(stderr)}`));
      else resolve(Number(ms[1]));
    });
  });
}

export async function vdiskMoveBench(a: Router, b: Router, registry: string, runs: number, fio: FioOptions, say: (s: string) => void): Promise<VDiskMoveResult> {
  const onA = path.join(a.mountpoint, FILE);
  const onB = path.join(b.mountpoint, FILE);
  say(`laying out ${fio.size} of ${FILE} through the owner's mount`);
  await layOut(onA, fio.size);
  const handoverMs: number[] = [];
  const returnMs: number[] = [];
  const iops: Record<string, { local: number[]; delegate: number[]; viaOwner: number[] }> = {};
  for (const j of JOBS) iops[j] = { local: [], delegate: [], viaOwner: [] };
  for (let i = 0; i < runs; i++) {
    for (const j of JOBS) iops[j]!.local.push((await runFio(onA, WORKLOADS.find((w) => w.name === j)!, fio)).iops);
    handoverMs.push(await move(onA, b.name, registry));
    for (const j of JOBS) {
      const w = WORKLOADS.find((x) => x.name === j)!;
      iops[j]!.delegate.push((await runFio(onB, w, fio)).iops);
      iops[j]!.viaOwner.push((await runFio(onA, w, fio)).iops);
    }
    returnMs.push(await move(onB, a.name, registry));
    say(`vdisk-move round ${i + 1}: handover ${handoverMs[i]} ms, return ${returnMs[i]} ms`);
  }
  const rows = JOBS.map((j) => {
    const x = iops[j]!;
    const local = median(x.local);
    return {
      workload: j, local: Math.round(local), delegate: Math.round(median(x.delegate)), viaOwner: Math.round(median(x.viaOwner)),
      delegateRatio: median(x.delegate) / local, viaOwnerRatio: median(x.viaOwner) / local,
    };
  });
  return { handoverMs, returnMs, rows };
}

/** The bench's lines for the result. */
export function vdiskMoveTable(r: VDiskMoveResult, runs: number, fio: FioOptions): string[] {
  return [
    `per-vDisk move (\`vpoolfs move FILE --to rb\` and back, ${runs} rounds): handover median ${median(r.handoverMs)} ms of ${r.handoverMs.join(', ')} ms; return median ${median(r.returnMs)} ms of ${r.returnMs.join(', ')} ms`,
    `I/O on the moved vDisk, medians of ${runs} runs of ${fio.runtimeSec} s (fio, O_DIRECT, ${fio.size} vDisk): local = through A's mount while A serves it; delegate = through B's own mount while B serves it; via owner = through A's mount while B serves it (forwarded, loopback TCP)`,
    '',
    '| workload | local IOPS | delegate IOPS | delegate / local | via owner IOPS | via owner / local |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.rows.map((x) => `| ${x.workload} | ${x.local} | ${x.delegate} | ${x.delegateRatio.toFixed(2)} | ${x.viaOwner} | ${x.viaOwnerRatio.toFixed(2)} |`),
  ];
}
