/**
 * fio write-and-verify jobs for the mount tests: crc32c verify data written by the job (`--do_verify`), or
 * only verified later (`--verify_only`, after a remount or from the backend alone). Same seed, so the
 * verify-only run expects exactly what the write run wrote. No verify state file is written.
 */
import { q } from './mount.js';

export interface FioJob {
  name: string;
  rw: 'write' | 'randwrite';
  bs: string;
  direct: 0 | 1;
  size: string;
}

/** The fio command line of `job` on the file `dir/<job.name>`. */
export function fioVerifyCommand(dir: string, job: FioJob, verifyOnly: boolean): string {
  const engine = job.direct ? '--ioengine=libaio --iodepth=16' : '--ioengine=psync';
  return [
    'fio --minimal',
    `--name=${job.name} --filename=${q(`${dir}/${job.name}`)} --size=${job.size} --rw=${job.rw} --bs=${job.bs} --direct=${job.direct}`,
    engine,
    '--verify=crc32c --verify_fatal=1 --verify_state_save=0 --randrepeat=1 --randseed=42',
    verifyOnly ? '--verify_only' : '--do_verify=1',
  ].join(' ');
}
