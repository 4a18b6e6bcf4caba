/**
 * DESIGN §4 through NBD: kill -9 of the daemon while NBD clients write, restart (the stale mount and the
 * stale unix socket are cleared), and every write that was acknowledged and flushed (FLUSH or FUA) is there:
 * - fio's nbd engine, 4 KiB random writes at depth 16 verified with crc32c, then kill -9, restart, and
 *   fio --verify_only through NBD again;
 * - a libnbd writer that logs each write once its FLUSH (or FUA) is answered, killed under it;
 * - SIGTERM under that writer: the NBD server lets its client go before the mount is fenced and the rest
 *   shipped, the daemon exits 0, and from the backend alone (state removed) every acknowledged write is there.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { fuseTest } from './helpers/mount.js';
import { NBD_PYTHON, PY_DIR, ok, q, sh, startNbdMount } from './helpers/nbd.js';

const test = fuseTest();
const MiB = 2 ** 20;

function fioNbd(uri: string, verifyOnly: boolean): string {
  return [
    `fio --minimal --name=nbdverify --ioengine=nbd --uri=${q(uri)} --size=64M --rw=randwrite --bs=4k --iodepth=16`,
    '--verify=crc32c --verify_fatal=1 --verify_state_save=0 --randrepeat=1 --randseed=42',
    verifyOnly ? '--verify_only' : '--do_verify=1 --end_fsync=1',
  ].join(' ');
}

test('fio nbd engine, crc32c verified, kill -9 and restart: fio --verify_only passes', async (t) => {
  const n = await startNbdMount(t);
  await writeFile(n.m.p('fio.img'), '');
  await truncate(n.m.p('fio.img'), 64 * MiB);
  await ok(t, fioNbd(n.uri('fio.img'), false), 300_000);
  await n.m.kill9();
  const m2 = await n.restart();
  t.regex(m2.log, /clearing a stale mount/);
  await ok(t, fioNbd(n.uri('fio.img'), true), 300_000);
});

test('kill -9 under a libnbd writer: every write acknowledged and flushed is there after a restart', async (t) => {
  const n = await startNbdMount(t);
  const blocks = 16384;
  await writeFile(n.m.p('acked.img'), '');
  await truncate(n.m.p('acked.img'), blocks * 4096);
  const w = startAckedWriter(n.sock, 'acked.img', blocks);
  await w.waitFor(400);
  await n.m.kill9();
  const acks = await w.done;
  t.true(acks.length >= 400 && acks.length < blocks, `the writer got ${acks.length} acks before the kill; stderr: ${w.stderr()}`);
  t.regex(w.stderr(), /writer stopped/);
  await n.restart();
  t.is(await checkAcked(n.sock, 'acked.img', blocks, acks, n.layout.root), `ok ${acks.length}`);
});

test('SIGTERM under a libnbd writer: exit 0, and from the backend alone every acknowledged write is there', async (t) => {
  const n = await startNbdMount(t);
  const blocks = 16384;
  await writeFile(n.m.p('acked.img'), '');
  await truncate(n.m.p('acked.img'), blocks * 4096);
  const w = startAckedWriter(n.sock, 'acked.img', blocks);
  await w.waitFor(400);
  t.is(await n.m.stop(), 0, n.m.log);
  const acks = await w.done;
  t.true(acks.length >= 400, `${acks.length} acks`);
  t.regex(n.m.log, /NBD client disconnected/);
  await rm(n.layout.state, { recursive: true, force: true });
  await n.restart();
  t.is(await checkAcked(n.sock, 'acked.img', blocks, acks, n.layout.root), `ok ${acks.length}`);
});

const SCRIPT = path.join(PY_DIR, 'nbd_acked.py');

/** test/helpers/py/nbd_acked.py writing; `done` resolves with the acknowledged block numbers once it has ended. */
function startAckedWriter(sock: string, name: string, blocks: number): { waitFor(n: number): Promise<void>; done: Promise<string[]>; stderr(): string } {
  const child = spawn(NBD_PYTHON, [SCRIPT, 'write', sock, name, String(blocks)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<string[]>((resolve) => child.on('close', () => resolve(out.trim().split('\n').filter(Boolean))));
  return {
    async waitFor(n) {
      while ((out.match(/\n/g)?.length ?? 0) < n && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    },
    done,
    stderr: () => err,
  };
}

/** nbd_acked.py check: its output (`ok N` when every acked block reads back). */
async function checkAcked(sock: string, name: string, blocks: number, acks: string[], dir: string): Promise<string> {
  const ackFile = path.join(dir, 'acks');
  await writeFile(ackFile, acks.join('\n'));
  const r = await sh(`${NBD_PYTHON} ${q(SCRIPT)} check ${q(sock)} ${name} ${blocks} < ${q(ackFile)}`);
  return (r.stdout + r.stderr).trim();
}
