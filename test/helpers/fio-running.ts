/**
 * fio verifying while it writes, for as long as a test needs (test/cluster-netns-vdisk-fio.test.ts): a prefill
 * (`fioPrefill`: the whole file written sequentially, then verified), then `startFioUntil`: random writes with
 * `--verify_backlog` (every block written is read back and checked by fio a few writes later), time-based and
 * stopped by the test (`stop()`: fio's `--trigger-file` appears; fio ends its jobs as at the end of a runtime and
 * exits 0 unless a verify or an I/O failed), so that whatever the test does in between happens in the middle of
 * the run, however slow the machine is; then `fioReadVerify`: every block of the file read and checked (its
 * crc32c header: written by fio, at that offset, intact). All three on the same file, block size and checksum.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { q, sh, type ShResult } from './mount.js';

export interface FioFile {
  file: string;
  size: string;
  bs: string;
}

function common(f: FioFile): string {
  return `fio --minimal --name=fio --filename=${q(f.file)} --size=${f.size} --bs=${f.bs} --verify=crc32c --verify_fatal=1 --verify_state_save=0`;
}

/** The error field of fio's `--minimal` line (0: the job saw no error). */
export function fioError(stdout: string): number | undefined {
  const line = stdout.split('\n').find((l) => l.startsWith('3;'));
  return line === undefined ? undefined : Number(line.split(';')[4]);
}

/** KiB read and written, from fio's `--minimal` line. */
export function fioKiB(stdout: string): { read: number; written: number } {
  const f = (stdout.split('\n').find((l) => l.startsWith('3;')) ?? '').split(';');
  return { read: Number(f[5] ?? 0), written: Number(f[46] ?? 0) };
}

/** Writes the whole file sequentially and verifies it (buffered I/O). */
export function fioPrefill(f: FioFile): Promise<ShResult> {
  return sh(`${common(f)} --rw=write --ioengine=psync --do_verify=1`);
}

/** Reads the whole file and checks every block's header and checksum. */
export function fioReadVerify(f: FioFile): Promise<ShResult> {
  return sh(`${common(f)} --rw=read --ioengine=psync`);
}

export interface RunningFio {
  /** fio's output so far. */
  readonly stdout: string;
  readonly stderr: string;
  readonly alive: boolean;
  /** Makes fio end (its trigger file) and waits for its exit code. */
  stop(): Promise<number | null>;
  /** Kills fio (teardown). */
  kill(): void;
}

/** Random O_DIRECT writes (libaio, `iodepth` in flight) verified as it goes, until `stop()`. */
export function startFioUntil(f: FioFile, trigger: string, iodepth = 8): RunningFio {
  const cmd = `${common(f)} --rw=randwrite --direct=1 --ioengine=libaio --iodepth=${iodepth} --verify_backlog=64 --do_verify=1 `
    + `--time_based --runtime=3600 --trigger-file=${q(trigger)}`;
  // in the trigger's directory: a triggered stop saves fio's verify state (`local-*-verify.state`) in its cwd
  const child = spawn('bash', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'], cwd: path.dirname(trigger) });
  let stdout = '';
  let stderr = '';
  let code: number | null | undefined;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (c) => { code = c; resolve(c); }));
  return {
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    get alive() { return code === undefined; },
    async stop() {
      writeFileSync(trigger, '');
      // fio looks for its trigger file about once a second
      // the timer unref'ed: a pending one would keep the test's worker alive for two minutes after fio exited
      return Promise.race([exited, sleep(120_000, undefined, { ref: false }).then(() => { if (code === undefined) child.kill('SIGKILL'); return exited; })]);
    },
    kill() { if (code === undefined) child.kill('SIGKILL'); },
  };
}
