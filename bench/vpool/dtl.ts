/**
 * `npm run bench:dtl`: what the DTL costs. fio 4 KiB random write at queue depth 1 and 16 x 4 jobs through
 * three vpoolfs mounts of the same build, one per DTL mode (none, async, sync), all using one real DTL
 * server process on loopback; prints each mode's median IOPS and its ratio to `none` measured in the same
 * run (issue 10 aims, on the kernel engine: async >= 0.9 of none, sync >= 0.7 at 16 x 4; issue 5 asked sync >= 0.6).
 * The mounts use the kernel engine (the default, named explicitly so that a change of default cannot move
 * this benchmark silently; `--fuse-engine fuse-native` measures the other). Runs are interleaved (run 1 of every workload on every
 * mode, then run 2 ...) so that drift of the machine spreads over the modes alike. It also prints the CPU
 * time each write costs the mount and the DTL server (utime + stime from /proc over the run, divided by the
 * writes fio made): a figure that moves far less with the machine's load than IOPS do, and the one that
 * says what the DTL costs a router whose server is on another host. JSON summary in
 * bench/results/dtl-latest.json.
 *
 *   node dist/bench/vpool/dtl.js [--runtime S] [--ramp S] [--size 256M] [--runs 3] [--fuse-engine kernel|fuse-native]
 *
 * Needs root (FUSE), fio, fusermount, mountpoint, getfattr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WORKLOADS, layOut, median, runFio, type FioResult } from '../shared/fio.js';
import { cpuPerIo, cpuUs } from '../shared/proc-cpu.js';

const MODES = ['none', 'async', 'sync'] as const;
type Mode = (typeof MODES)[number];
const NAMES = ['randwrite-4k-qd1', 'randwrite-4k-qd16x4'];
/** Issue 10's aims, as ratios to DTL none at 16 x 4. */
const AIM_ASYNC = 0.9;
const AIM_SYNC = 0.7;
const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(distDir, 'tools', 'cli.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const { values } = parseArgs({
  options: {
    runtime: { type: 'string', default: '5' }, ramp: { type: 'string', default: '1' }, size: { type: 'string', default: '256M' }, runs: { type: 'string', default: '3' },
    'fuse-engine': { type: 'string', default: 'kernel' },
  },
});
const engine = values['fuse-engine']!;
if (engine !== 'kernel' && engine !== 'fuse-native') throw new Error(`--fuse-engine must be kernel or fuse-native, got ${engine}`);
const fio = { runtimeSec: Number(values.runtime), rampSec: Number(values.ramp), size: values.size! };
const runs = Number(values.runs);

const children: ChildProcess[] = [];
function child(args: string[], log: string): ChildProcess {
  const out = fs.openSync(log, 'a'); // a file, never a pipe: a FUSE server blocked on a full pipe stalls the mount
  const c = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.push(c);
  return c;
}

async function until(what: string, ok: () => boolean, log: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what} not ready after 60 s; see ${log}`);
    await sleep(100);
  }
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bench-dtl-'));
  const mounts = new Map<Mode, string>();
  try {
    const srvLog = path.join(root, 'dtl-server.log');
    const server = child(['dtl-server', '--listen', '127.0.0.1:0', '--dir', path.join(root, 'dtl')], srvLog);
    const daemons = new Map<Mode, ChildProcess>();
    let address = '';
    await until('the DTL server', () => {
      address = /listening (\S+)/.exec(fs.existsSync(srvLog) ? fs.readFileSync(srvLog, 'utf8') : '')?.[1] ?? '';
      return address !== '';
    }, srvLog);
    for (const mode of MODES) {
      const sub = path.join(root, mode);
      const mnt = path.join(sub, 'mnt');
      fs.mkdirSync(mnt, { recursive: true });
      const log = path.join(sub, 'vpoolfs.log');
      const daemon = child(['mount', mnt, '--vpool', `bench-${mode}`, '--state', path.join(sub, 'state'), '--backend', `file://${path.join(sub, 'backend')}`, '--dtl', mode, '--dtl-server', address, '--fuse-engine', engine], log);
      await until(`the ${mode} mount`, () => spawnSync('mountpoint', ['-q', mnt]).status === 0, log);
      mounts.set(mode, mnt);
      daemons.set(mode, daemon);
      const file = path.join(mnt, 'fio.dat');
      await layOut(file, fio.size);
      const want = mode === 'none' ? 'ok_standalone' : 'ok_sync';
      await until(`the ${mode} DTL`, () => spawnSync('getfattr', ['-n', 'user.vdisk.info', '--only-values', file], { encoding: 'utf8' }).stdout.includes(`"state":"${want}"`), log);
    }
    const results = new Map<string, FioResult[]>();
    const cpu = new Map<string, Array<{ mount: number; server: number }>>();
    const load: number[] = [];
    for (let run = 0; run < runs; run++) {
      for (const w of WORKLOADS.filter((x) => NAMES.includes(x.name))) {
        for (const mode of MODES) {
          const pids = [daemons.get(mode)!.pid!, server.pid!];
          const before = pids.map(cpuUs);
          const r = await runFio(path.join(mounts.get(mode)!, 'fio.dat'), w, fio);
          const [mountUs, serverUs] = pids.map((pid, i) => cpuUs(pid) - before[i]);
          const key = `${w.name}/${mode}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          cpu.set(key, [...(cpu.get(key) ?? []), { mount: cpuPerIo(mountUs, r.iops, fio), server: cpuPerIo(serverUs, r.iops, fio) }]);
          load.push(os.loadavg()[0]);
          process.stderr.write(`run ${run + 1}/${runs} ${key}: ${Math.round(r.iops)} IOPS\n`);
        }
      }
    }
    const summary: Record<string, unknown> = { when: new Date().toISOString(), engine, runs, fio, loadavg: { min: Math.min(...load), max: Math.max(...load) }, workloads: {} };
    console.log(`\nDTL cost, ${engine} engine, 4 KiB random write, median of ${runs} run(s) of ${fio.runtimeSec} s; load average ${Math.min(...load).toFixed(1)}-${Math.max(...load).toFixed(1)}${runs < 3 ? ' (fewer than 3 runs: a smoke test, not a measurement)' : ''}`);
    console.log('workload'.padEnd(24) + MODES.map((m) => `${m} IOPS`.padStart(12)).join('') + '   async/none   sync/none');
    const cpuLines: string[] = [];
    for (const name of NAMES) {
      const med = Object.fromEntries(MODES.map((m) => [m, median((results.get(`${name}/${m}`) ?? []).map((r) => r.iops))])) as Record<Mode, number>;
      console.log(name.padEnd(24) + MODES.map((m) => Math.round(med[m]).toString().padStart(12)).join('') + (med.async / med.none).toFixed(2).padStart(13) + (med.sync / med.none).toFixed(2).padStart(12));
      const cpuMed = Object.fromEntries(MODES.map((m) => {
        const xs = cpu.get(`${name}/${m}`) ?? [];
        return [m, { mount: median(xs.map((x) => x.mount)), server: median(xs.map((x) => x.server)) }];
      })) as Record<Mode, { mount: number; server: number }>;
      cpuLines.push(name.padEnd(24) + MODES.map((m) => `${cpuMed[m].mount.toFixed(0)} + ${cpuMed[m].server.toFixed(0)}`.padStart(14)).join(''));
      (summary.workloads as Record<string, unknown>)[name] = { cpuUsPerWrite: cpuMed, iops: med, ratio: { async: med.async / med.none, sync: med.sync / med.none }, runs: Object.fromEntries(MODES.map((m) => [m, results.get(`${name}/${m}`)])) };
    }
    const deep = (summary.workloads as Record<string, { ratio: { async: number; sync: number } }>)['randwrite-4k-qd16x4'];
    if (deep !== undefined) {
      const aims = [['async', deep.ratio.async, AIM_ASYNC], ['sync', deep.ratio.sync, AIM_SYNC]] as const;
      summary.aims = Object.fromEntries(aims.map(([m, r, aim]) => [m, { ratio: r, aim, met: r >= aim }]));
      console.log(`aims of issue 10 at 16 x 4: ${aims.map(([m, r, aim]) => `${m}/none ${r.toFixed(2)} >= ${aim} ${r >= aim ? 'met' : 'not met'}`).join('; ')}`);
    }
    console.log(`\nCPU per write, µs (median; mount + DTL server):`);
    console.log('workload'.padEnd(24) + MODES.map((m) => m.padStart(14)).join(''));
    for (const l of cpuLines) console.log(l);
    const out = path.resolve(distDir, '..', 'bench', 'results', 'dtl-latest.json');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(summary, null, 2));
    console.log(`summary: ${out}`);
  } finally {
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await new Promise((r) => { c.once('exit', r); setTimeout(r, 120_000); });
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    }
    for (const mnt of mounts.values()) if (spawnSync('mountpoint', ['-q', mnt]).status === 0) spawnSync('fusermount', ['-uz', mnt]);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

process.on('SIGINT', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});
await main();
