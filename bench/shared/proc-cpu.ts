/**
 * CPU time of a process from /proc, for the benchmarks that print what each I/O costs a daemon: a figure
 * that moves far less with the machine's load than IOPS do. utime + stime of /proc/PID/stat cover every
 * thread of the process (worker threads, libfuse's threads, libuv's pool), not its children.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const TICK_US = 1e6 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

/** CPU time a process has used so far, in µs (utime + stime, /proc/PID/stat fields 14 and 15). */
export function cpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // the name may hold spaces: fields after ')'
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

/**
 * µs of CPU per I/O over one fio run: `cpuDeltaUs` was measured around the whole run, ramp included, while
 * fio's IOPS leave the ramp out; the I/Os of the ramp are counted at the measured rate.
 */
export function cpuPerIo(cpuDeltaUs: number, iops: number, o: { runtimeSec: number; rampSec: number }): number {
  const ios = iops * (o.runtimeSec + o.rampSec);
  return ios > 0 ? cpuDeltaUs / ios : NaN;
}
