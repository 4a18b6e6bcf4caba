/**
 * DESIGN §4 through a real mount. A writer child process logs each acknowledged write:
 * - kill -9 of the daemon mid-write, mount again (the stale mount is cleared): every acknowledged
 *   (fsync'ed) write is there;
 * - SIGTERM mid-write: exit 0, unmounted cleanly, and from the backend alone (state removed) every
 *   acknowledged write is there;
 * - state directory removed, backend kept: the tree, attributes and data come back.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { treeComesBackFromBackend } from './helpers/tree-roundtrip.js';
import { freshLayout, fuseTest, isMounted, startMount } from './helpers/mount.js';

const test = fuseTest();
const BLOCK = 4096;

/** Block i: its number, then bytes derived from it; written at a spread-out offset. */
const WRITER = `
import os, sys, hashlib
path, do_fsync = sys.argv[1], sys.argv[2] == '1'
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
i = 0
while True:
    body = (b'%08d' % i) + hashlib.sha256(b'%d' % i).digest() * 128
    try:
        os.pwrite(fd, body[:${BLOCK}], (i * 3 % 65536) * ${BLOCK} + (i // 21846) * 0)
        if do_fsync:
            os.fsync(fd)
    except OSError as e:
        sys.stderr.write('writer stopped: %s\\n' % e)
        break
    sys.stdout.write('%d\\n' % i)
    sys.stdout.flush()
    i += 1
    if i >= 21845:
        break
`;

function expected(i: number): Buffer {
  const h = createHash('sha256').update(String(i)).digest();
  return Buffer.concat([Buffer.from(String(i).padStart(8, '0')), Buffer.concat(Array(128).fill(h))]).subarray(0, BLOCK);
}

interface Writer {
  acked(): number[];
  waitFor(n: number): Promise<void>;
  done: Promise<void>;
}

function startWriter(file: string, fsync: boolean): Writer {
  const child = spawn('python3', ['-c', WRITER, file, fsync ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acks: number[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) acks.push(Number(l));
  });
  const done = new Promise<void>((resolve) => child.on('close', () => resolve())); // after its last ack line is read
  return {
    acked: () => acks.slice(),
    async waitFor(n) {
      const deadline = Date.now() + 60_000;
      while (acks.length < n && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    },
    done,
  };
}

async function checkAcked(t: ExecutionContext, file: string, acks: number[]): Promise<void> {
  const fh = await open(file, 'r');
  const bad: number[] = [];
  const got = Buffer.alloc(BLOCK);
  for (const i of acks) {
    await fh.read(got, 0, BLOCK, (i * 3 % 65536) * BLOCK);
    if (!got.equals(expected(i))) bad.push(i);
  }
  await fh.close();
  t.is(bad.length, 0, `${bad.length} of ${acks.length} acknowledged writes are missing or wrong: ${bad.slice(0, 20).join(' ')}…`);
}

test('kill -9 mid-write, mount again: every acknowledged write is there', async (t) => {
  const l = await freshLayout(t);
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: l.backend };
  const m = await startMount(t, opts);
  const w = startWriter(m.p('disk'), true);
  await w.waitFor(300);
  await m.kill9();
  await w.done;
  const acks = w.acked();
  t.true(acks.length >= 300, `the writer got ${acks.length} acks before the kill`);

  const m2 = await startMount(t, opts);
  t.regex(m2.log, /clearing a stale mount/);
  await checkAcked(t, m2.p('disk'), acks);
});

test('SIGTERM mid-write: clean unmount, exit 0, and every acknowledged write is in the backend', async (t) => {
  const l = await freshLayout(t);
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: l.backend };
  const m = await startMount(t, opts);
  const w = startWriter(m.p('disk'), false);
  await w.waitFor(500);
  t.is(await m.stop(), 0, m.log);
  t.false(await isMounted(l.mountpoint), 'unmounted');
  await w.done;
  const acks = w.acked();
  t.true(acks.length >= 500);

  await rm(l.state, { recursive: true, force: true });
  const m2 = await startMount(t, opts);
  await checkAcked(t, m2.p('disk'), acks);
  if (process.env.DEBUG_VPOOLFS_TEST) console.log(m.log);
});

test('state directory removed, backend kept: the tree and the data come back', async (t) => {
  const l = await freshLayout(t);
  await treeComesBackFromBackend(t, l, l.backend);
});
