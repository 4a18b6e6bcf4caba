/**
 * Back-pressure and backend outages: when the write cache is full of data the backend has not taken,
 * writes wait — they never fail — and the cache stays within its limit; once the backend takes data again
 * everything drains and every byte reads back, also after a backend restart.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import type { VDisk } from '../volume/types.js';
import { setLogLevel } from '../util/log.js';
import { gatedStore } from './helpers/gated-store.js';
import { gone, listFiles, pattern, poolEnv, SLOT_SIZE, treeBytes } from './helpers/vpool.js';
import { copyInBackend } from './helpers/readpath.js';
import { until } from './helpers/until.js';

const MiB = 2 ** 20;
setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error'); // the retries these tests cause on purpose are warnings
const CHUNK = 64 * 1024;

/** Yields to the event loop and timers for a while (no assertion depends on how long). */
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond` holds, checking every few ms (the ava timeout bounds it). */
/** Writes `data` in CHUNK pieces, one after the other; `done` counts the bytes acknowledged. */
function writer(v: VDisk, data: Buffer): { promise: Promise<void>; done: () => number; settled: () => boolean } {
  let done = 0;
  let settled = false;
  const promise = (async () => {
    for (let off = 0; off < data.length; off += CHUNK) {
      await v.write(off, data.subarray(off, off + CHUNK));
      done += CHUNK;
    }
  })().finally(() => { settled = true; });
  promise.catch(() => undefined); // checked by the test
  return { promise, done: () => done, settled: () => settled };
}

test('a full write cache with the backend stalled: writes wait, never fail, and all complete when it moves', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const limit = MiB;
  const pool = await env.open({ backend: gated, writeCacheBytes: limit });
  await pool.createFile('/bp', 0o644, 0, 0, 0);
  const v = pool.vdisk('/bp');
  const id = v.info().id;
  gated.pause();
  const data = pattern(11, 8 * MiB);
  const w = writer(v, data);
  // the cache fills and the uploader is held at the gate
  await until('the uploader held at the gate, half the cache written', () => gated.waiting > 0 && (w.done() >= limit / 2 || w.settled()));
  await pause(300);
  t.false(w.settled(), 'the writes have not all completed while the backend takes nothing');
  t.true(w.done() < data.length);
  t.true(w.done() <= limit + CHUNK, `acknowledged ${w.done()} bytes with a ${limit}-byte cache and nothing uploaded`);
  const scoBytes = treeBytes(path.join(env.state, 'wc', id, 'sco'));
  t.true(scoBytes <= limit + CHUNK / 4096 * SLOT_SIZE, `the write cache holds ${scoBytes} bytes of SCOs, limit ${limit}`);
  t.deepEqual(listFiles(env.backendDir).filter((f) => f.startsWith('vdisks/')), [], 'nothing reached the backend');
  // reads of what was acknowledged are not held up by the waiting writes
  t.true((await v.read(0, CHUNK)).equals(data.subarray(0, CHUNK)));

  gated.resume();
  await t.notThrowsAsync(w.promise, 'no write failed');
  t.is(w.done(), data.length);
  t.true((await v.read(0, data.length)).equals(data), 'every byte reads back');
  await v.syncToBackend();
  t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 });
  t.is(v.info().dirtyBytes, 0);
  t.true(treeBytes(path.join(env.state, 'wc', id, 'sco')) <= limit + SLOT_SIZE * 16, 'the cache is back within its limit');
  await env.close(pool);
  // everything is in the backend: it comes back from there alone
  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open();
  t.true((await again.vdisk('/bp').read(0, data.length)).equals(data), 'every byte, after a backend restart');
});

test('a backend that fails for a while: writes wait out the outage, the backlog drains, data survives a backend restart', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: MiB });
  await pool.createFile('/out', 0o644, 0, 0, 0);
  const v = pool.vdisk('/out');
  gated.setFailing(true);
  const data = pattern(12, 3 * MiB);
  const w = writer(v, data);
  // the uploader keeps retrying against the failing backend; the writes fill the cache and wait
  await until('five puts failed, half the cache written', () => gated.failed >= 5 && (w.done() >= MiB / 2 || w.settled()));
  await pause(200);
  t.false(w.settled(), 'writes wait for the backend rather than fail');
  t.true(v.info().uploadBacklog.tlogs > 0, 'TLogs wait for upload');
  gated.setFailing(false);
  await t.notThrowsAsync(w.promise, 'no write failed');
  await v.syncToBackend();
  t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 }, 'the backlog drained');
  t.is(v.info().dirtyBytes, 0);
  t.is(v.info().backendBytes, (data.length / 4096) * SLOT_SIZE, 'every SCO slot is in the backend once');
  t.true((await v.read(0, data.length)).equals(data), 'every byte reads back');

  // a second outage while idle, with writes that fit the cache: they are acknowledged at once
  gated.setFailing(true);
  const more = pattern(13, 256 * 1024);
  await v.write(data.length, more);
  const sync = v.syncToBackend();
  let synced = false;
  void sync.then(() => { synced = true; }, () => { synced = true; });
  await until('ten puts failed', () => gated.failed >= 10);
  t.false(synced, 'syncToBackend waits for the backend to come back');
  gated.setFailing(false);
  await t.notThrowsAsync(sync);
  t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 });
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open();
  const w2 = again.vdisk('/out');
  t.is(w2.size, data.length + more.length);
  t.true((await w2.read(0, data.length)).equals(data), 'the first batch, after a backend restart');
  t.true((await w2.read(data.length, more.length)).equals(more), 'the second batch, after a backend restart');
});

test('reads of evicted data retry through a short backend outage', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: 256 * 1024 });
  await pool.createFile('/r', 0o644, 0, 0, 0);
  const v = pool.vdisk('/r');
  const data = pattern(14, 2 * MiB);
  await v.write(0, data);
  await v.syncToBackend();
  await v.write(data.length, pattern(15, 512 * 1024)); // pushes the first SCOs out of the cache
  t.true(await gone(path.join(env.state, 'wc', v.info().id, 'sco', '00000001')), 'SCO 1 was evicted');
  gated.setFailing(true, true);
  const read = v.read(0, 64 * 1024);
  await until('a put failed', () => gated.failed >= 1);
  gated.setFailing(false);
  const got = await read.catch((err: { code?: string }) => err.code);
  t.true(Buffer.isBuffer(got) && got.equals(data.subarray(0, 64 * 1024)), `a read during a short outage: ${Buffer.isBuffer(got) ? 'wrong bytes' : got}`);
});

test('two vDisks share the write cache: with the backend stalled both wait, neither fails, both complete', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: MiB });
  await pool.createFile('/x', 0o644, 0, 0, 0);
  await pool.createFile('/y', 0o644, 0, 0, 0);
  const x = pool.vdisk('/x');
  const y = pool.vdisk('/y');
  gated.pause();
  const dx = pattern(21, 3 * MiB);
  const dy = pattern(22, 3 * MiB);
  const wx = writer(x, dx);
  const wy = writer(y, dy);
  await until('the uploader held at the gate, half the cache written', () => gated.waiting > 0 && wx.done() + wy.done() >= MiB / 2);
  await pause(300);
  t.false(wx.settled() && wy.settled(), 'not everything completed with the backend stalled');
  t.true(wx.done() + wy.done() <= MiB + 2 * CHUNK, `acknowledged ${wx.done() + wy.done()} bytes with a 1 MiB cache`);
  gated.resume();
  await t.notThrowsAsync(Promise.all([wx.promise, wy.promise]));
  t.true((await x.read(0, dx.length)).equals(dx));
  t.true((await y.read(0, dy.length)).equals(dy));
  await pool.syncToBackend();
  for (const v of [x, y]) t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 });
});

test('the read cache stays within its limit', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/rc', 0o644, 0, 0, 0);
  const data = pattern(23, 2 * MiB);
  await pool.vdisk('/rc').write(0, data);
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  const limit = 256 * 1024;
  pool = await env.open({ readCacheBytes: limit, backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  const v = pool.vdisk('/rc');
  for (let off = 0; off < data.length; off += CHUNK) {
    t.true((await v.read(off, CHUNK)).equals(data.subarray(off, off + CHUNK)), `bytes at ${off}`);
    const used = treeBytes(path.join(env.state, 'rc'));
    if (used > limit) {
      t.fail(`the read cache holds ${used} bytes, limit ${limit}`);
      break;
    }
  }
  t.true((await v.read(0, data.length)).equals(data), 'a second pass reads right');
});

test('a write waiting for space on a vDisk that is removed fails with CLOSED and gives its space back', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: MiB });
  await pool.createFile('/x', 0o644, 0, 0, 0);
  await pool.createFile('/y', 0o644, 0, 0, 0);
  const x = pool.vdisk('/x');
  gated.pause();
  const w = writer(x, pattern(24, 4 * MiB));
  await until('the uploader held at the gate, half the cache written', () => gated.waiting > 0 && w.done() >= MiB / 2);
  await pause(200);
  t.false(w.settled(), 'a write waits for space');
  await pool.unlink('/x');
  const err = await w.promise.then(() => null, (e: { code?: string; message?: string }) => e);
  // the space /x took is free again: nothing is counted any more (the vPool's own accounting)
  const space = (pool as unknown as { ctx: { space: { usedBytes: number } } }).ctx.space;
  t.deepEqual({ code: err?.code, usedBytes: space.usedBytes }, { code: 'CLOSED', usedBytes: 0 },
    `the waiting write fails with CLOSED (got: ${err?.message}) and the removed vDisk holds no write-cache space`);
  const y = pool.vdisk('/y');
  await y.write(0, pattern(25, 64 * 1024));
  t.true((await y.read(0, 64 * 1024)).equals(pattern(25, 64 * 1024)));
});

test('a crash with the write cache full of data the backend never took: after the restart everything drains and reads back', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: MiB });
  await pool.createFile('/full', 0o644, 0, 0, 0);
  const v = pool.vdisk('/full');
  gated.pause();
  const data = pattern(26, 3 * MiB);
  const w = writer(v, data);
  await until('the uploader held at the gate, half the cache written', () => gated.waiting > 0 && w.done() >= MiB / 2);
  await pause(200);
  const acked = w.done();
  // the process goes away here: what is on disk is its state
  const crash = path.join(env.root, 'crash');
  fs.cpSync(env.state, path.join(crash, 'state'), { recursive: true, filter: (src) => !src.endsWith('lock.mdb') });
  fs.cpSync(env.backendDir, path.join(crash, 'backend'), { recursive: true });
  gated.resume();
  await w.promise;
  await env.close(pool);
  const opts = { stateDir: path.join(crash, 'state'), backendUrl: `file://${path.join(crash, 'backend')}`, writeCacheBytes: MiB };
  const again = await env.open(opts);
  const u = again.vdisk('/full');
  t.true((await u.read(0, acked)).equals(data.subarray(0, acked)), `the ${acked} acknowledged bytes`);
  // the cache is over-full of unshipped data at start: new writes wait for the uploads, then go through
  await t.notThrowsAsync(u.write(acked, data.subarray(acked)));
  await u.syncToBackend();
  t.deepEqual(u.info().uploadBacklog, { scos: 0, tlogs: 0 });
  await env.close(again);
  fs.rmSync(opts.stateDir, { recursive: true, force: true });
  const rebuilt = await env.open(opts);
  t.true((await rebuilt.vdisk('/full').read(0, data.length)).equals(data), 'every byte, after a backend restart');
});

test('cache limits change while mounted: a larger write cache lets waiting writes go on, a smaller read cache evicts at once', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, writeCacheBytes: MiB });
  await pool.createFile('/live', 0o644, 0, 0, 0);
  const v = pool.vdisk('/live');
  gated.pause();
  const data = pattern(27, 3 * MiB);
  const w = writer(v, data);
  await until('the uploader held at the gate, half the cache written', () => gated.waiting > 0 && w.done() >= MiB / 2);
  await pause(200);
  t.false(w.settled(), 'writes wait in a full 1 MiB cache while the backend takes nothing');
  pool.setCacheLimits({ writeCacheBytes: 8 * MiB });
  await w.promise; // the backend is still paused: only the new limit lets them through
  t.is(gated.waiting > 0, true, 'the backend still takes nothing');
  t.true((await v.read(0, data.length)).equals(data));
  t.throws(() => pool.setCacheLimits({ readCacheBytes: -1 }), { message: /readCacheBytes must be a whole number of bytes/ });
  gated.resume();
  await env.close(pool);

  // the read cache: filled from the backend, then shrunk to nothing
  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open({ readCacheBytes: 4 * MiB, backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  t.true((await again.vdisk('/live').read(0, data.length)).equals(data));
  const rc = path.join(env.state, 'rc');
  t.true(treeBytes(rc) > MiB, `the read cache holds ${treeBytes(rc)} bytes`);
  const cold = again.cacheStats();
  t.true(cold.readCacheMisses > 0 && cold.readCacheHits === 0, JSON.stringify(cold));
  t.is(cold.readCacheBytes, treeBytes(rc));
  t.true((await again.vdisk('/live').read(0, data.length)).equals(data));
  const warm = again.cacheStats();
  t.is(warm.readCacheMisses, cold.readCacheMisses, 'a second pass fetches nothing');
  t.true(warm.readCacheHits >= cold.readCacheMisses, JSON.stringify(warm));
  again.setCacheLimits({ readCacheBytes: 0 });
  t.is(treeBytes(rc), 0, 'every piece evicted');
  t.true((await again.vdisk('/live').read(0, data.length)).equals(data), 'reads still right, from the backend');
});
