/**
 * State-disk faults (DESIGN §4 "the state disk fails (EIO) or fills (ENOSPC)"), injected through a
 * FaultyIo (write cache) and a FaultyMds (metadata): no fsync reports success unless the data is on the
 * disk; writes fail or wait with the cause visible in info().fault; nothing acknowledged before is lost.
 */
import test from 'ava';
import { pattern } from './helpers/vpool.js';
import { powerCutRig } from './helpers/faulty-pool.js';

const CS = 4096;

async function codeOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? 'no code';
  }
}

test('a failed fdatasync (EIO) fails that fsync and every later one, stops writes, shows in info; a restart has every acknowledged write', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  const a = pattern(1, 2 * CS);
  await v.write(0, a);
  await v.sync();
  const b = pattern(2, CS);
  await v.write(10 * CS, b);
  boot.io.failNext('fdatasync', 'EIO');
  t.is(await codeOf(v.sync()), 'BACKEND', 'the fsync whose fdatasync failed reports EIO');
  t.is(await codeOf(v.sync()), 'BACKEND', 'a later fsync does not report success over the lost pages');
  t.is(await codeOf(v.write(20 * CS, pattern(3, CS))), 'BACKEND', 'writes stop');
  const f = v.info().fault;
  t.is(f?.code, 'EIO');
  t.true(typeof f?.since === 'number' && f.since > 0);
  t.deepEqual(await v.read(0, 2 * CS), a, 'reads go on');
  // a restart after a kill: everything acknowledged is there (the page cache kept it)
  rig.kill(boot);
  const boot2 = await rig.open();
  const v2 = boot2.pool.vdisk('/d');
  t.deepEqual(await v2.read(0, 2 * CS), a);
  t.deepEqual(await v2.read(10 * CS, CS), b);
  t.is(v2.info().fault, null, 'a restart starts over from what is on disk');
  await v2.sync();
  // and what the restart found is made durable by its first fsync
  rig.cut(boot2);
  const boot3 = await rig.open();
  const v3 = boot3.pool.vdisk('/d');
  t.deepEqual(await v3.read(0, 2 * CS), a);
  t.deepEqual(await v3.read(10 * CS, CS), b);
  await rig.close(boot3);
});
