/**
 * A vPool on the s3:// backend, against a real Ceph radosgw started for this file:
 * - an outage: radosgw is killed (SIGKILL, by PID) in the middle of a run; writes go on into the write
 *   cache, then wait once it is full (no error), the upload backlog shows; radosgw comes back, everything
 *   drains and every byte matches, also from the backend alone (state directory removed);
 * - encryption at rest on S3: no stored object holds the pattern written, it reads back from the backend
 *   alone, and a wrong key is refused.
 */
import test from 'ava';
import fs from 'node:fs';
import { setLogLevel } from '../util/log.js';
import { openBlobStore } from '../volume/backend/index.js';
import { EncryptionError } from '../volume/backend/encrypted-store.js';
import { ENCRYPTION_MARKER, openBackend } from '../volume/backend/open-backend.js';
import type { VDisk } from '../volume/types.js';
import { pattern, poolEnv } from './helpers/vpool.js';
import { useS3Server } from './helpers/s3-server.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error'); // the retries the outage causes are warnings
const s3 = useS3Server('vpool');
const MiB = 2 ** 20;
const CHUNK = 64 * 1024;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes `data` at `base` in CHUNK pieces, one after the other; `done` counts the bytes acknowledged. */
function writer(v: VDisk, base: number, data: Buffer): { promise: Promise<void>; done: () => number; settled: () => boolean } {
  let done = 0;
  let settled = false;
  const promise = (async () => {
    for (let off = 0; off < data.length; off += CHUNK) {
      await v.write(base + off, data.subarray(off, off + CHUNK));
      done += CHUNK;
    }
  })().finally(() => { settled = true; });
  promise.catch(() => undefined); // awaited by the test
  return { promise, done: () => done, settled: () => settled };
}

/** Waits until `done()` has not moved for `quietMs` (the writer is waiting), or the writer settled. */
async function untilStalled(w: { done: () => number; settled: () => boolean }, quietMs: number): Promise<void> {
  let last = -1;
  let since = Date.now();
  while (!w.settled()) {
    if (w.done() !== last) {
      last = w.done();
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return;
    }
    await pause(50);
  }
}

test.serial('radosgw killed mid-run: writes fill the write cache then wait, no errors; back, everything drains and every byte matches', async (t) => {
  const env = poolEnv(t);
  const url = s3.url('outage', 'vp');
  t.teardown(async () => {
    if (s3.rgwPid() === undefined) await s3.startRgw();
  });
  const limit = 2 * MiB;
  const pool = await env.open({ backendUrl: url, writeCacheBytes: limit, scoClusters: 32, tlogScos: 4 });
  await pool.createFile('/disk', 0o644, 0, 0, 0);
  const v = pool.vdisk('/disk');
  const data = pattern(7, 12 * MiB);
  await v.write(0, data.subarray(0, MiB));
  await v.syncToBackend();

  const pid = s3.rgwPid();
  await s3.stopRgw();
  t.log(`radosgw ${pid} killed`);
  const w = writer(v, MiB, data.subarray(MiB));
  await untilStalled(w, 2000);
  t.false(w.settled(), 'the writes wait while the write cache is full and the backend is away');
  t.true(w.done() > 0, 'writes went on into the write cache after the backend went away');
  const during = v.info();
  t.true(during.uploadBacklog.scos > 0, JSON.stringify(during.uploadBacklog));
  t.log(`stalled after ${w.done() / MiB} MiB acknowledged with the backend away; backlog ${JSON.stringify(during.uploadBacklog)}, dirty ${during.dirtyBytes}`);

  await s3.startRgw();
  await w.promise; // rejects (fails the test) if any write failed
  await v.syncToBackend();
  t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 });
  t.true((await v.read(0, data.length)).equals(data), 'every byte reads back');
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open({ backendUrl: url });
  t.true((await again.vdisk('/disk').read(0, data.length)).equals(data), 'every byte is in S3');
  await env.close(again);
});

test('encrypted on S3: no stored object holds the pattern, it reads back from S3 alone, a wrong key is refused', async (t) => {
  const env = poolEnv(t);
  const url = s3.url('encrypted', 'vp');
  const key = Buffer.alloc(32, 0x5a);
  const data = pattern(99, 2 * MiB + 777);
  const pool = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
  await pool.createFile('/secret-disk', 0o644, 0, 0, 0);
  await pool.vdisk('/secret-disk').write(8192, data);
  await env.close(pool);

  const raw = await openBlobStore(url);
  const keys = await raw.list('');
  t.true(keys.includes(ENCRYPTION_MARKER) && keys.some((k) => k.includes('/sco/')) && keys.some((k) => k.includes('/tlog/')), keys.join(', '));
  for (const k of keys) {
    const stored = await raw.get(k);
    for (let i = 0; i + 64 <= data.length; i += 16411) t.false(stored.includes(data.subarray(i, i + 64)), `${k} holds plaintext at ${i}`);
    if (k !== ENCRYPTION_MARKER) t.false(stored.includes('secret-disk'), `${k} shows the tree`);
  }
  await raw.close();

  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
  t.true((await again.vdisk('/secret-disk').read(8192, data.length)).equals(data));
  await env.close(again);
  const err = await t.throwsAsync(openBackend(url, { encryptionKey: Buffer.alloc(32, 1) }), { instanceOf: EncryptionError });
  t.is(err?.reason, 'WRONG_KEY');
});
