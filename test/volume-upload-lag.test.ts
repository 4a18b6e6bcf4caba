/**
 * Progress and lag toward the backend. The upload lag a vDisk reports (user.vdisk.info's view, the metrics' vpoolfs_upload_lag_seconds, the API
 * status): 0 while everything written is in the backend; once a write is held from the backend, it grows
 * from that write on; when the backend takes it all, back to 0. A ship the backend refuses logs its progress
 * (bytes and objects out of how many, the rate) with the backend's cause every time, then what it shipped.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBlobStore } from '../volume/backend/index.js';
import { gatedStore } from './helpers/gated-store.js';
import { poolEnv } from './helpers/vpool.js';
import { captureLog } from './helpers/slot-probe.js';
import { setLogLevel } from '../util/log.js';

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

test('a ship the backend refuses logs its progress and the cause each time, then what it shipped', async (t) => {
  setLogLevel('info');
  const logs = captureLog(t);
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  await pool.createFile('/p', 0o644, 0, 0, 0);
  const v = pool.vdisk('/p');
  gated.setFailing(true);
  await v.write(0, Buffer.alloc(256 * 1024, 3));
  const ship = pool.syncToBackend();
  const refusals = () => logs.filter((l) => l.message === 'shipping to the backend: the backend refuses, retrying');
  await until(() => refusals().length >= 2);
  for (const r of refusals().slice(0, 2)) {
    t.regex(String(r.cause), /BACKEND|fail/i, `the cause is in every progress line: ${JSON.stringify(r)}`);
    t.true((r.totalBytes as number) >= 256 * 1024, `the total waiting: ${r.totalBytes} (slots with their headers)`);
    t.is(r.doneBytes, 0, 'nothing shipped while refused');
    t.true(typeof r.bytesPerSecond === 'number' && typeof r.totalObjects === 'number' && (r.totalObjects as number) > 0);
  }
  gated.setFailing(false);
  await ship;
  const shipped = logs.filter((l) => l.message === 'shipped to the backend');
  t.is(shipped.length, 1);
  t.like(shipped[0], { what: 'every vDisk and the tree to the backend' });
  t.true((shipped[0].bytes as number) >= 256 * 1024);
});

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await sleep(50);
}
