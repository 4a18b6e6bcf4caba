/**
 * The power-cut harness itself (helpers/powercut.ts): after a cut a file keeps only its fsynced bytes, a file
 * never fsynced is gone, a rename never fsynced is undone; while cut, writes and fsyncs fail with EIO.
 * If this test fails, every other power-cut test proves nothing.
 */
import fs from 'node:fs';
import { tempRoot } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import { pattern } from './helpers/ref-disk.js';

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
