/**
 * Durability of a cork (volume/vdisk/vdisk.ts cork()) under a power cut. A cork persists the cluster map once a
 * TLog is in the backend; it must commit only map entries whose data is on disk. A write that lands while
 * the cork's fdatasync runs is not covered by that fdatasync: if its map page were committed, a power cut
 * would leave the map pointing at a slot that never reached the disk (a read fails, or worse).
 */
import test from 'ava';
import { pattern } from './helpers/vpool.js';
import { until } from './helpers/until.js';
import { powerCutRig } from './helpers/faulty-pool.js';

const CS = 4096;

test('a write during the cork\'s fdatasync is not committed by that cork: after a power cut it reads old or new, never an error', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  const a = pattern(1, CS);
  const b = pattern(2, CS);
  await v.write(0, a);
  const release = boot.io.holdSyncs();
  const shipped = v.syncToBackend(); // closes TLog 1 (cluster 0), uploads it, then corks: its fdatasync waits at the gate
  await until('an fdatasync waits at the gate', () => boot.io.held > 0);
  await v.write(100 * CS, b); // same map page as cluster 0, a new SCO that nothing fdatasyncs
  release();
  await shipped;
  rig.cut(boot);

  const boot2 = await rig.open();
  const v2 = boot2.pool.vdisk('/d');
  t.deepEqual(await v2.read(0, CS), a, 'cluster 0 was fdatasynced by the cork and is in the backend');
  let got: Buffer | undefined;
  try {
    got = await v2.read(100 * CS, CS);
  } catch (err) {
    t.fail(`reading the cluster written during the cork failed after the power cut: ${(err as Error).message}`);
    return;
  }
  t.true(got.equals(b) || got.equals(Buffer.alloc(CS)), 'the cluster written during the cork holds its old or its new content');
  await rig.close(boot2);
});

test('a cork whose metadata commit fails (ENOSPC, EIO) keeps its map pages for the retry: nothing corked is lost', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  const a = pattern(3, 3 * CS);
  await v.write(0, a);
  for (const code of ['NO_SPACE', 'BACKEND'] as const) {
    boot.mds.failNext(code, { match: (ops) => ops.some((o) => o.key.endsWith('/meta')) }); // the cork's commits
  }
  await v.syncToBackend();
  // the uploader retries the cork (every second) until it commits
  await until('the cork is retried and commits', () => boot.mds.failed === 2 && v.info().uploadBacklog.tlogs === 0);
  await v.sync();
  rig.cut(boot);
  const boot2 = await rig.open();
  t.deepEqual(await boot2.pool.vdisk('/d').read(0, 3 * CS), a, 'the clusters of the TLog whose cork failed first are there');
  await rig.close(boot2);
});
