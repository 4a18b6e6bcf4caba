/**
 * The upload lag a vDisk reports (user.vdisk.info's view, the metrics' vpoolfs_upload_lag_seconds, the API
 * status): 0 while everything written is in the backend; once a write is held from the backend, it grows
 * from that write on; when the backend takes it all, back to 0.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBlobStore } from '../volume/backend/index.js';
import { gatedStore } from './helpers/gated-store.js';
import { poolEnv } from './helpers/vpool.js';

test('upload lag: 0 when shipped, growing while the backend holds the data, 0 again once it took it', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  await pool.createFile('/l', 0o644, 0, 0, 0);
  const v = pool.vdisk('/l');
  t.is(v.info().uploadLagMs, 0, 'nothing written');
  gated.pause();
  const before = Date.now();
  await v.write(0, Buffer.alloc(64 * 1024, 7));
  const shipping = v.syncToBackend();
  await sleep(50);
  const first = v.info();
  t.true(first.dirtyBytes > 0, 'the data waits at the gate');
  t.true(first.uploadLagMs >= 50 && first.uploadLagMs <= Date.now() - before, `lag ${first.uploadLagMs} ms counts from the write`);
  await sleep(20);
  t.true(v.info().uploadLagMs > first.uploadLagMs, 'it grows while the data waits');
  gated.resume();
  await shipping;
  const after = v.info();
  t.is(after.dirtyBytes, 0);
  t.is(after.uploadLagMs, 0, 'all in the backend: no lag');
  t.is(after.dtlQueuedBytes, 0, 'no DTL: nothing queued');
});
