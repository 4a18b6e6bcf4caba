/**
 * The power-cut harness itself (helpers/powercut.ts): after a cut a file keeps only its fsynced bytes, a file
 * never fsynced is gone, a rename never fsynced is undone; while cut, writes and fsyncs fail with EIO.
 * If this test fails, every other power-cut test proves nothing.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readAckLog } from './helpers/ack-log.js';
import { tempRoot } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import { markCut } from './helpers/powercut-vpool.js';
import { pattern } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const test = powercutTest();

function errCode(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

test('a cut keeps what was fsynced and loses what was not', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 256);

  // kept: 64 KiB fsynced; lost: 64 KiB appended after the fsync, a file never fsynced, a rename not fsynced
  const synced = pattern(1, 1, 65536);
  const later = pattern(1, 2, 65536);
  const fd = fs.openSync(lfs.p('kept'), 'w');
  fs.writeSync(fd, synced, 0, synced.length, 0);
  fs.fsyncSync(fd);
  fs.writeFileSync(lfs.p('renamed-before'), 'x');
  const dfd = fs.openSync(lfs.dir, 'r');
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  fs.writeSync(fd, later, 0, later.length, synced.length);
  fs.writeFileSync(lfs.p('never-synced'), pattern(1, 3, 8192));
  fs.renameSync(lfs.p('renamed-before'), lfs.p('renamed-after'));

  await lfs.cut();
  t.is(errCode(() => fs.writeSync(fd, later, 0, 4096, 0)), 'EIO', 'a write after the cut fails');
  t.is(errCode(() => fs.fsyncSync(fd)), 'EIO', 'an fsync after the cut fails');
  t.is(errCode(() => fs.fsyncSync(fd)), 'EIO', 'a second fsync after the cut fails too');
  t.is(errCode(() => fs.readFileSync(lfs.p('kept'))), 'EIO', 'a read after the cut fails');
  fs.closeSync(fd);

  await lfs.remount();
  const got = fs.readFileSync(lfs.p('kept'));
  t.is(got.length, synced.length, 'the file has exactly its fsynced length');
  t.true(got.equals(synced), 'the fsynced bytes are there');
  t.false(fs.existsSync(lfs.p('never-synced')), 'a file never fsynced is gone');
  t.true(fs.existsSync(lfs.p('renamed-before')) && !fs.existsSync(lfs.p('renamed-after')), 'a rename never fsynced is undone');

  // and the filesystem works again after the remount
  fs.writeFileSync(lfs.p('after'), 'ok');
  t.is(fs.readFileSync(lfs.p('after'), 'utf8'), 'ok');
});

/**
 * Two threads append 4117-byte records to their own files, fdatasync now and then (logging the size each
 * fdatasync covered, one write(2) a line, to an ack log on the normal disk) and replace a small file by
 * rename with fsyncs: the pattern of the DTL server's files. After each cut every file must be at least as
 * long as its last acknowledged fdatasync. If this fails, a power-cut test that loses fsynced data proves
 * nothing about vpoolfs.
 */
const APPENDER = `
import os, sys, random, threading
d, acks, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
def meta(sub, r):
    tmp = os.path.join(sub, 'meta.tmp'); fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b'{"floor": %d}' % r.randint(0, 1000)); os.fsync(fd); os.close(fd)
    os.rename(tmp, os.path.join(sub, 'meta')); dfd = os.open(sub, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
def run(w):
    r = random.Random(seed * 2 + w)
    sub = os.path.join(d, 'w%d' % w)
    try:
        os.makedirs(sub); dfd = os.open(d, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
        fd = os.open(os.path.join(sub, 'seg'), os.O_WRONLY | os.O_CREAT, 0o644)
        pos = 0; rec = b'x' * 4117
        meta(sub, r)
        while True:
            k = r.randint(1, 24)
            os.pwrite(fd, rec * k, pos); pos += 4117 * k
            x = r.random()
            if x < 0.3:
                os.fdatasync(fd); os.write(a, b'%d %d\\n' % (w, pos))
            elif x < 0.33:
                meta(sub, r)
    except OSError:
        return
ts = [threading.Thread(target=run, args=(w,)) for w in (0, 1)]
[t.start() for t in ts]; [t.join() for t in ts]
`;

test('appending writers with fdatasync: a cut loses nothing acknowledged', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 512);
  const { seed, rand: r } = seeded(t);
  const rounds = Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 12);
  const problems: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const dir = lfs.p(`r${i}`);
    fs.mkdirSync(dir);
    const acks = path.join(root, `r${i}.acks`);
    const child = spawn('python3', ['-c', APPENDER, dir, acks, String(seed + i)], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const ms = 50 + Math.floor(r() * 900);
    await sleep(ms);
    child.kill('SIGSTOP');
    markCut(acks); // what the writer logs after this may have straddled the cut
    await lfs.cut();
    child.kill('SIGKILL');
    await exited;
    await lfs.remount();
    for (const w of [0, 1]) {
      const lines = readAckLog(acks);
      const acked = lines.slice(0, lines.indexOf('cut')).filter((l) => l.startsWith(`${w} `)).map((l) => Number(l.split(' ')[1]));
      const want = acked.length === 0 ? 0 : acked[acked.length - 1];
      let got = 0;
      try {
        got = fs.statSync(path.join(dir, `w${w}`, 'seg')).size;
      } catch {
        got = 0;
      }
      if (got < want) problems.push(`round ${i} (seed ${seed + i}, cut after ${ms} ms) writer ${w}: fdatasync acknowledged ${want} bytes, the file has ${got}`);
    }
    fs.rmSync(dir, { recursive: true, force: true }); // room for the next round
  }
  t.deepEqual(problems, [], `VPOOLFS_SEED=${seed}: the harness lost fdatasynced data:\n${problems.join('\n')}`);
});
