/**
 * State-disk faults (DESIGN §4 "the state disk fails (EIO) or fills (ENOSPC)"), injected through a
 * FaultyIo (write cache) and a FaultyMds (metadata): no fsync reports success unless the data is on the
 * disk; writes fail or wait with the cause visible in info().fault; nothing acknowledged before is lost.
 */
import test from 'ava';
import { pattern } from './helpers/vpool.js';
import { until } from './helpers/until.js';
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

test('a write that fails (ENOSPC) gives its write-cache room back and leaves the size as it was', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 4 * CS);
  const v = boot.pool.vdisk('/d');
  const a = pattern(1, 4 * CS);
  await v.write(0, a);
  for (let i = 0; i < 6; i++) {
    const used = boot.pool.cacheStats().writeCacheBytes;
    const inSco = i % 2 === 0; // the SCO write fails, or the TLog record of the new size does
    boot.io.failNext('writev', 'ENOSPC', { match: (f) => (inSco ? f.includes('/sco/') : f.endsWith('.open')) });
    t.is(await codeOf(v.write(6 * CS, pattern(10 + i, 4 * CS))), 'NO_SPACE', `failed write ${i} reports ENOSPC`);
    t.is(v.size, 4 * CS, `failed growing write ${i} does not change the size`);
    if (inSco) t.is(boot.pool.cacheStats().writeCacheBytes, used, `the room reserved for failed write ${i} is given back`);
  }
  t.is(v.info().fault?.code, 'ENOSPC', 'the full disk is visible');
  const b = pattern(20, 2 * CS);
  await v.write(4 * CS, b);
  t.is(v.info().fault, null, 'a write that succeeds clears the passing fault');
  t.is(v.size, 6 * CS);
  t.deepEqual(await v.read(0, 6 * CS), Buffer.concat([a, b]));
  await v.resize(12 * CS);
  t.deepEqual(await v.read(6 * CS, 6 * CS), Buffer.alloc(6 * CS), 'nothing of a failed write shows when the vDisk grows');
  await rig.close(boot);
});

test('a TLog close that fails from the age timer (ENOSPC) is logged and retried, never thrown: writes go on, nothing is lost', async (t) => {
  const rig = powerCutRig(t, { scoMaxAgeMs: 20 });
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  boot.io.failNext('open', 'ENOSPC', { count: 3, match: (f) => f.endsWith('.open') });
  const a = pattern(1, CS);
  await v.write(0, a);
  await until('the timer tried to close the TLog three times', () => boot.io.injected === 3);
  const b = pattern(2, CS);
  await v.write(CS, b);
  await v.syncToBackend();
  t.deepEqual(await v.read(0, 2 * CS), Buffer.concat([a, b]));
  await rig.close(boot);
  const boot2 = await rig.open();
  t.deepEqual(await boot2.pool.vdisk('/d').read(0, 2 * CS), Buffer.concat([a, b]), 'after a restart');
  await rig.close(boot2);
});
