/**
 * fio as a library for the mount benchmark: the workloads of issues 3 and 10 ("Speed"), one fio run of a
 * workload against a file with `--output-format=json`, and the few statistics the report needs (median).
 *
 * Every workload runs on one file of `size` bytes that `prepareFiles` has written once beforehand (so reads
 * read real data, never holes), time-based for `runtimeSec` after `rampSec` of warm-up that is not counted.
 * With several jobs, all of them share that one file and fio reports them as one group.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export type Unit = 'IOPS' | 'MB/s';

/**
 * The files each target holds, all of `size` bytes, laid out once before the first run:
 * - `main`: written sequentially; the random and sequential write jobs overwrite it, the random reads read it;
 * - `seq`: written sequentially, then only read (the 1 MiB sequential read of a vDisk laid out in order);
 * - `overwritten`: written sequentially, then every 4 KiB block of it overwritten once in random order, then
 *   only read (on vpoolfs its clusters then sit in SCOs in random order: what a VM's disk looks like after
 *   a while).
 */
export type FileRole = 'main' | 'seq' | 'overwritten';
export const FILE_NAMES: Record<FileRole, string> = { main: 'fio.dat', seq: 'seq.dat', overwritten: 'overwritten.dat' };

export interface Workload {
  /** Short stable name, used by `--only` and in the JSON summary. */
  name: string;
  /** What it is, for the table. */
  label: string;
  /** The figure that matters for it: IOPS for 4 KiB, MB/s (10^6 bytes/s) for 1 MiB. */
  unit: Unit;
  /** Which side of fio's report to read. */
  dir: 'read' | 'write';
  /** Which of the target's files it runs on. */
  file: FileRole;
  /** fio job options (without filename, size, runtime). */
  args: string[];
}

const aio = ['--ioengine=libaio', '--direct=1'];

export const WORKLOADS: Workload[] = [
  { name: 'randwrite-4k-qd1', label: '4 KiB random write, qd 1', unit: 'IOPS', dir: 'write', file: 'main',
    args: [...aio, '--rw=randwrite', '--bs=4k', '--iodepth=1', '--numjobs=1'] },
  { name: 'randwrite-4k-qd16x4', label: '4 KiB random write, qd 16 x 4 jobs', unit: 'IOPS', dir: 'write', file: 'main',
    args: [...aio, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--numjobs=4'] },
  { name: 'randread-4k-qd1', label: '4 KiB random read, qd 1', unit: 'IOPS', dir: 'read', file: 'main',
    args: [...aio, '--rw=randread', '--bs=4k', '--iodepth=1', '--numjobs=1'] },
  { name: 'randread-4k-qd16x4', label: '4 KiB random read, qd 16 x 4 jobs', unit: 'IOPS', dir: 'read', file: 'main',
    args: [...aio, '--rw=randread', '--bs=4k', '--iodepth=16', '--numjobs=4'] },
  { name: 'seqwrite-1m', label: '1 MiB sequential write, qd 1', unit: 'MB/s', dir: 'write', file: 'main',
    args: [...aio, '--rw=write', '--bs=1M', '--iodepth=1', '--numjobs=1'] },
  { name: 'seqread-1m', label: '1 MiB sequential read, qd 1 (file written sequentially)', unit: 'MB/s', dir: 'read', file: 'seq',
    args: [...aio, '--rw=read', '--bs=1M', '--iodepth=1', '--numjobs=1'] },
  { name: 'seqread-1m-overwritten', label: '1 MiB sequential read, qd 1 (file overwritten at random in 4 KiB)', unit: 'MB/s', dir: 'read',
    file: 'overwritten', args: [...aio, '--rw=read', '--bs=1M', '--iodepth=1', '--numjobs=1'] },
  // A database's pattern: each direct write followed by fsync(2), one at a time.
  { name: 'randwrite-4k-fsync', label: '4 KiB random write + fsync each', unit: 'IOPS', dir: 'write', file: 'main',
    args: ['--ioengine=psync', '--direct=1', '--fsync=1', '--rw=randwrite', '--bs=4k', '--numjobs=1'] },
  // Four threads each doing synchronous pwrite(2) on the same file: what the inode lock serialises unless
  // the filesystem answers opens with FOPEN_PARALLEL_DIRECT_WRITES.
  { name: 'randwrite-4k-psync4', label: '4 KiB random write, 4 threads of sync pwrite', unit: 'IOPS', dir: 'write', file: 'main',
    args: ['--ioengine=psync', '--direct=1', '--rw=randwrite', '--bs=4k', '--numjobs=4'] },
];

export interface FioOptions {
  /** Measured seconds per run. */
  runtimeSec: number;
  /** Warm-up seconds before measuring. */
  rampSec: number;
  /** File size in fio's notation, e.g. `256M`. */
  size: string;
}

export interface FioResult {
  iops: number;
  /** Bandwidth in MB/s (10^6 bytes per second). */
  mbps: number;
  /**
   * Mean total latency of one I/O (submission + completion) in microseconds; for the fsync workload the
   * fsync that follows each write is added. (Through FUSE, libaio's io_submit of a direct I/O does the
   * whole request, so completion latency alone would read as ~0.)
   */
  latMeanUs: number;
  /** 99th percentile of the total latency in microseconds, without the fsync (0 if fio did not report it). */
  latP99Us: number;
}

/** The figure a workload is judged by. */
export function figure(w: Workload, r: FioResult): number {
  return w.unit === 'IOPS' ? r.iops : r.mbps;
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The fio child currently running, so that an interrupted benchmark can stop it by its PID. */
let current: number | undefined;
export function currentFioPid(): number | undefined {
  return current;
}

/** Runs fio with `args`, JSON into a temp file; resolves with the parsed report. */
async function fioJson(args: string[]): Promise<FioReport> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vpoolfs-fio-'));
  const out = path.join(dir, 'out.json');
  try {
    const stderr = await new Promise<string>((resolve, reject) => {
      const child = spawn('fio', [...args, '--output-format=json', `--output=${out}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      current = child.pid;
      let err = '';
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      child.on('error', reject);
      child.on('close', (code, sig) => {
        current = undefined;
        if (code === 0) resolve(err);
        else reject(new Error(`fio ${args.join(' ')} failed (${sig ?? `exit ${code}`}): ${err.trim().slice(-800)}`));
      });
    });
    const text = await fs.readFile(out, 'utf8');
    // fio may print notes before the JSON document.
    const start = text.indexOf('{');
    if (start < 0) throw new Error(`fio wrote no JSON: ${text.slice(0, 300)} ${stderr.slice(0, 300)}`);
    return JSON.parse(text.slice(start)) as FioReport;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

interface FioSide {
  iops: number;
  bw_bytes: number;
  lat_ns?: { mean: number; percentile?: Record<string, number> };
}
interface FioReport {
  jobs: Array<{ error: number; read: FioSide; write: FioSide; sync?: { lat_ns?: { mean: number } } }>;
}

/** Writes `file` sequentially to its full size once, so that every workload finds real data. */
export async function layOut(file: string, size: string): Promise<void> {
  await fioJson(['--name=layout', `--filename=${file}`, `--size=${size}`, '--rw=write', '--bs=1M',
    '--ioengine=libaio', '--direct=1', '--iodepth=4', '--fallocate=none', '--end_fsync=1']);
}

/**
 * Overwrites every 4 KiB block of the (laid-out) `file` exactly once, in random order (fio's random map
 * is on: no block twice, none left out), then fsyncs.
 */
export async function overwriteAtRandom(file: string, size: string): Promise<void> {
  await fioJson(['--name=overwrite', `--filename=${file}`, `--size=${size}`, '--rw=randwrite', '--bs=4k',
    '--ioengine=libaio', '--direct=1', '--iodepth=16', '--randrepeat=0', '--fallocate=none', '--overwrite=0', '--end_fsync=1']);
}

/** Lays out, under `dir`, the files that `workloads` need (see FileRole). */
export async function prepareFiles(dir: string, size: string, workloads: Workload[]): Promise<void> {
  const roles = new Set(workloads.map((w) => w.file));
  for (const role of roles) {
    const file = path.join(dir, FILE_NAMES[role]);
    await layOut(file, size);
    if (role === 'overwritten') await overwriteAtRandom(file, size);
  }
}

/** One measured run of `w` on `file`. */
export async function runFio(file: string, w: Workload, o: FioOptions): Promise<FioResult> {
  const report = await fioJson([
    `--name=${w.name}`, `--filename=${file}`, `--size=${o.size}`, ...w.args,
    '--time_based', `--runtime=${o.runtimeSec}`, `--ramp_time=${o.rampSec}`,
    '--group_reporting', '--lat_percentiles=1', '--norandommap', '--randrepeat=0', '--fallocate=none', '--overwrite=0',
  ]);
  const job = report.jobs[0];
  if (!job) throw new Error(`fio reported no job for ${w.name}`);
  if (job.error) throw new Error(`fio job ${w.name} reported error ${job.error}`);
  const side = job[w.dir];
  const syncNs = w.args.includes('--fsync=1') ? job.sync?.lat_ns?.mean ?? 0 : 0;
  return {
    iops: side.iops,
    mbps: side.bw_bytes / 1e6,
    latMeanUs: ((side.lat_ns?.mean ?? 0) + syncNs) / 1000,
    latP99Us: (side.lat_ns?.percentile?.['99.000000'] ?? 0) / 1000,
  };
}

/** fio's version string, for the summary. */
export async function fioVersion(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('fio', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', () => resolve('unknown'));
    child.on('close', () => resolve(out.trim() || 'unknown'));
  });
}
