/**
 * A local restart after a kill finds files the kernel never wrote back (the page cache kept them): the
 * first fsync after the restart must make them durable, or a power cut right after it loses writes that
 * were acknowledged before the kill and "synced" after it.
 */
import test from 'ava';
import { pattern } from './helpers/vpool.js';
import { powerCutRig } from './helpers/faulty-pool.js';

const CS = 4096;

test('after a kill and a local restart, the first fsync makes everything found on disk durable (closed TLogs, their SCOs, the journal)', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  boot.backend.pause(); // nothing gets uploaded: the closed TLogs stay local
  const data = pattern(7, 40 * CS); // 5 SCOs of 8 clusters, TLogs of 2 SCOs: two closed TLogs and an open one
  await v.write(0, data);
  await v.resize(48 * CS); // a resize record in the open journal
  rig.kill(boot); // nothing was ever fdatasynced, the page cache has it all
  const boot2 = await rig.open();
  boot2.backend.pause();
  const v2 = boot2.pool.vdisk('/d');
  t.deepEqual(await v2.read(0, 40 * CS), data, 'the kill lost nothing');
  await v2.sync();
  rig.cut(boot2);
  const boot3 = await rig.open();
  const v3 = boot3.pool.vdisk('/d');
  t.is(v3.size, 48 * CS, 'the resize acknowledged before the kill and synced after it survived the power cut');
  t.deepEqual(await v3.read(0, 40 * CS), data, 'the writes acknowledged before the kill and synced after it survived the power cut');
  await rig.close(boot3);
});

test('a resize whose call returned survives a power cut (no fsync needed)', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 5 * CS);
  const v = boot.pool.vdisk('/d');
  await v.write(0, pattern(1, 4 * CS));
  await v.sync();
  await v.resize(3 * CS + 100); // shrink: the tail must read as zeros even after growing back
  await v.resize(64 * CS);
  rig.cut(boot);
  const boot2 = await rig.open();
  const v2 = boot2.pool.vdisk('/d');
  t.is(v2.size, 64 * CS);
  const want = Buffer.alloc(4 * CS);
  pattern(1, 3 * CS + 100).copy(want);
  t.deepEqual(await v2.read(0, 4 * CS), want);
  await rig.close(boot2);
});
