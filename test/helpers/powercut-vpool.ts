/**
 * A vPool whose state directory is on a LoopFs (powercut.ts) and whose file:// backend is on the normal disk,
 * served by a real daemon (mount.ts), with a writer child (powercut-writer.ts) on one vDisk; and the check after
 * the restart (powercut-ops.ts). Shared by the power-cut tests that go through a mount.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { readAckLog } from './ack-log.js';
import { ok, q, sh, startMount, type MountHandle, type MountOpts } from './mount.js';
import { checkSurvivors, parseAckLog, PC_BASE_SIZE, survivors, type AckLog } from './powercut-ops.js';
import type { LoopFs } from './powercut.js';

const WRITER = fileURLToPath(new URL('./powercut-writer.js', import.meta.url));

/** Mount options for a round: state on the loop fs, backend beside it on the normal disk, small SCOs and TLogs
 * (so that SCOs close, TLogs ship, corks and evictions happen within seconds), no automatic snapshots. */
export async function roundOpts(root: string, lfs: LoopFs, name: string, config: Record<string, unknown> = {}): Promise<MountOpts> {
  const cfg = path.join(root, `${name}.json`);
  await writeFile(cfg, JSON.stringify({ scoClusters: 256, tlogScos: 2, scoMaxAgeMs: 1000, schedule: { snapshot: null, retention: null, scrub: null }, ...config }));
  return {
    mountpoint: path.join(root, name),
    state: lfs.p(name, 'state'),
    backend: `file://${path.join(root, `${name}-backend`)}`,
    extraArgs: ['--config', cfg],
  };
}

export interface WriterRun {
  child: ChildProcess;
  ackFile: string;
  exited: Promise<number | null>;
  stderr(): string;
}

/** Starts the writer on `file` and resolves once it is ready (the vDisk opened and fsynced). */
export async function startPcWriter(file: string, seed: number, io: 'direct' | 'plain', mode: 'stop' | 'probe', ackFile: string): Promise<WriterRun> {
  const child = spawn(process.execPath, [WRITER, file, String(seed), io, mode, ackFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    void exited.then((code) => reject(new Error(`the writer exited (${code}) before it was ready: ${err}`)));
  });
  return { child, ackFile, exited, stderr: () => err };
}

/** Waits for the writer's exit; kills it and throws if it is still running after `ms` (a hung I/O). */
export async function writerExit(w: WriterRun, ms: number, what: string): Promise<void> {
  const r = await Promise.race([w.exited.then(() => true), sleep(ms, false, { ref: false })]);
  if (!r) {
    w.child.kill('SIGKILL');
    await w.exited;
    throw new Error(`the writer did not return within ${ms} ms ${what} (an I/O hung); last ack lines: ${readAckLog(w.ackFile).slice(-5).join(' | ')}`);
  }
}

/**
 * Appends `cut` to an ack log (O_APPEND: one line, after every line logged so far). Call it just BEFORE the cut:
 * a line before it was acknowledged before the cut; one after it may have straddled the cut.
 */
export function markCut(ackFile: string): void {
  appendFileSync(ackFile, 'cut\n');
}

/** Creates the vDisk `name` of PC_BASE_SIZE bytes on the mount (in a child process: never from the daemon). */
export async function createDisk(t: ExecutionContext, m: MountHandle, name = 'disk'): Promise<string> {
  const file = m.p(name);
  await ok(t, `truncate -s ${PC_BASE_SIZE} ${q(file)}`);
  return file;
}

/** After the restart: the vDisk must hold what survivors() allows. Returns the problems (empty: good). */
export async function verifyDisk(file: string, seed: number, log: AckLog): Promise<{ problems: string[]; size: number }> {
  let got: Buffer;
  try {
    got = await readFile(file);
  } catch (err) {
    return { problems: [`reading ${file} after the restart failed: ${(err as Error).message}; ${await unreadable(file)}`], size: -1 };
  }
  return { problems: checkSurvivors(survivors(seed, log), got), size: got.length };
}

/** Which clusters of `file` fail to read (4 KiB preads, the first 20 named). */
async function unreadable(file: string): Promise<string> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    return `and it cannot be opened again: ${(err as Error).message}`;
  }
  try {
    const { size } = await fh.stat();
    const bad: number[] = [];
    let count = 0;
    const buf = Buffer.alloc(4096);
    for (let a = 0; a * 4096 < size; a++) {
      try {
        await fh.read(buf, 0, 4096, a * 4096);
      } catch {
        count++;
        if (bad.length < 20) bad.push(a);
      }
    }
    return `size ${size}, ${count} clusters fail to read: ${bad.join(' ')}${count > bad.length ? ' …' : ''}`;
  } finally {
    await fh.close();
  }
}

/**
 * Restarts the daemon on the remounted loop fs; a failure to mount is a finding, with the daemon's log.
 * LMDB_RESTORE=safe: a real power cut reboots the machine, and lmdb-js (overlappingSync) picks its meta page by
 * the boot id — same boot id: the newest meta page, trusted as if the page cache had survived; new boot id: the
 * last one known flushed. The loop-device cut keeps the boot id, so without this lmdb would open a meta page
 * whose pages never reached the disk, which no real power cut produces. The env var makes lmdb-js behave as
 * after a reboot (node_modules/lmdb/open.js `safeRestore`, mdb.c mdb_pick_meta).
 */
export async function restart(t: ExecutionContext, opts: MountOpts): Promise<MountHandle> {
  // a reboot leaves no mount behind; the killed daemon's stale one would also answer `mountpoint -q` (or not,
  // depending on timing) before the new daemon has mounted, and the test would read through a dead mount
  await sh(`umount -l ${q(opts.mountpoint)} 2>/dev/null; true`);
  return startMount(t, { ...opts, readyMs: 120_000, env: { ...opts.env, LMDB_RESTORE: 'safe' } });
}

export { parseAckLog, readAckLog };
