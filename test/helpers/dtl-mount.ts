/**
 * Helpers of the DTL tests through a real mount: a writer child (python) that writes 4 KiB blocks at
 * distinct offsets and reports each acknowledged write (`ack i`) and each completed fsync (`synced i`:
 * every write up to i was acknowledged before it); a checker that reads the blocks back in another
 * process; the `user.vdisk.info` DTL view; a wait for a DTL state.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { q, sh } from './mount.js';

/** Block i goes to a distinct offset (7919 is odd: a bijection on 32768 blocks of a 128 MiB disk). */
const PY_BLOCK = `
import hashlib
def block(i):
    return ((b'%08d' % i) + hashlib.sha256(b'%d' % i).digest() * 128)[:4096]
def offset(i):
    return (i * 7919 % 32768) * 4096
`;

const WRITER = `${PY_BLOCK}
import os, sys
path, first, fsync_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDWR)
i = first
while i < 32768:
    try:
        os.pwrite(fd, block(i), offset(i))
    except OSError as e:
        sys.stderr.write('writer stopped: %s\\n' % e)
        break
    print('ack %d' % i, flush=True)
    if fsync_every and (i + 1) % fsync_every == 0:
        try:
            os.fsync(fd)
        except OSError as e:
            sys.stderr.write('writer stopped: %s\\n' % e)
            break
        print('synced %d' % i, flush=True)
    i += 1
`;

const CHECKER = `${PY_BLOCK}
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
bad = [i for i in map(int, sys.stdin.read().split()) if os.pread(fd, 4096, offset(i)) != block(i)]
print(' '.join(map(str, bad)))
`;

export interface Writer {
  readonly acked: number[];
  /** The last i with `synced i` (-1: none). */
  readonly lastSynced: number;
  readonly stderr: string;
  waitFor(n: number): Promise<void>;
  stop(): Promise<void>;
  done: Promise<void>;
}

export function startWriter(file: string, first: number, fsyncEvery: number): Writer {
  const child = spawn('python3', ['-c', WRITER, file, String(first), String(fsyncEvery)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked: number[] = [];
  let lastSynced = -1;
  let buf = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith('ack ')) acked.push(Number(l.slice(4)));
      else if (l.startsWith('synced ')) lastSynced = Number(l.slice(7));
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((resolve) => child.on('close', () => resolve())); // after its last line is read
  return {
    acked,
    get lastSynced() {
      return lastSynced;
    },
    get stderr() {
      return stderr;
    },
    async waitFor(n) {
      const deadline = Date.now() + 120_000;
      while (acked.length < n && Date.now() < deadline && child.exitCode === null) await sleep(20);
      if (acked.length < n) throw new Error(`the writer got ${acked.length} acks, waited for ${n}: ${stderr}`);
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await done;
    },
    done,
  };
}

/** The blocks among `indices` that do not read back right (through the mount, from a child process). */
export async function badBlocks(t: ExecutionContext, file: string, indices: number[], explain?: () => string): Promise<number[]> {
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const p = spawn('python3', ['-c', CHECKER, file], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(indices.join(' '));
  });
  if (r.code !== 0) t.fail(`checker failed: ${r.err}${explain === undefined ? '' : `\n${explain()}`}`);
  return r.out.trim() === '' ? [] : r.out.trim().split(' ').map(Number);
}

export interface DtlView {
  mode: string;
  state: string;
  server: string | null;
}

export async function dtlInfo(file: string): Promise<DtlView> {
  const r = await sh(`getfattr -n user.vdisk.info --only-values ${q(file)}`);
  if (r.code !== 0) throw new Error(`getfattr user.vdisk.info failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { dtl: DtlView }).dtl;
}

/** Polls user.vdisk.info until `ok(dtl)` (fails after two minutes, with the last view). */
export async function waitDtl(file: string, ok: (d: DtlView) => boolean, what: string): Promise<DtlView> {
  const deadline = Date.now() + 120_000;
  let last: DtlView | undefined;
  while (Date.now() < deadline) {
    last = await dtlInfo(file);
    if (ok(last)) return last;
    await sleep(100);
  }
  throw new Error(`DTL never got ${what}; last: ${JSON.stringify(last)}`);
}
