/**
 * The read path's sources and its checks, in single large requests (volume/datapath/read/read-path.ts):
 * - one read gathers holes, write-cache runs, cached read-cache pieces and pieces fetched from the backend;
 * - readInto fills an offset window of a caller's buffer, cuts at the size and touches nothing else;
 * - the file backend is read in place (its object files, no read-cache copy) when it is on the state
 *   directory's filesystem, and through the read cache when it is not;
 * - a flipped byte anywhere a large parallel read goes (a backend SCO, a write-cache SCO not yet uploaded,
 *   one that is in the backend too, a read-cache piece) is a logged CHECKSUM error or is mended from the
 *   good copy — never wrong bytes — and the clusters around it read right.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { randomInt } from 'node:crypto';
import type { VDisk, VPool } from '../volume/types.js';
import { CS, flipByte, pattern, poolEnv, SLOT_SIZE } from './helpers/vpool.js';
import { copyInBackend, emptyReadCache, evictAll, impl, localScos } from './helpers/readpath.js';
import { captureLog, slotAddress, codeOf } from './helpers/slot-probe.js';

const MiB = 2 ** 20;
const HEADER = 32;
const scoName = (n: number): string => n.toString(16).padStart(8, '0');

/**
 * /d of `clusters` clusters, every cluster written once by a 4 KiB write in a random order (after a
 * sequential write of it all): each MiB of it is spread over every SCO.
 */
async function scattered(pool: VPool, clusters: number): Promise<{ v: VDisk; data: Buffer }> {
  await pool.createFile('/d', 0o644, 0, 0, clusters * CS);
  const v = pool.vdisk('/d');
  await v.write(0, pattern(1, clusters * CS));
  const data = pattern(2, clusters * CS);
  const order = Array.from({ length: clusters }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (const a of order) await v.write(a * CS, data.subarray(a * CS, (a + 1) * CS));
  return { v, data };
}

/** Every cluster but `bad` reads right in large reads around it; reads covering it fail with CHECKSUM. */
async function aroundBad(t: ExecutionContext, v: VDisk, data: Buffer, bad: number, what: string): Promise<void> {
  t.is(await codeOf(v.read(0, data.length)), 'CHECKSUM', `${what}: the whole vDisk in one read`);
  t.is(await codeOf(v.read(bad * CS + 100, 10)), 'CHECKSUM', `${what}: 10 bytes of the damaged cluster`);
  const window = Buffer.alloc(data.length + 64);
  t.is(await codeOf(v.readInto(window.subarray(64), 0)), 'CHECKSUM', `${what}: readInto of the whole vDisk`);
  if (bad > 0) t.true((await v.read(0, bad * CS)).equals(data.subarray(0, bad * CS)), `${what}: everything before it`);
  const after = (bad + 1) * CS;
  if (after < data.length) t.true((await v.read(after, data.length - after)).equals(data.subarray(after)), `${what}: everything after it`);
}

function checksumLogged(lines: Array<Record<string, unknown>>, where: string, offset: number): boolean {
  return lines.some((l) => l.level === 'error' && l.message === `checksum error reading from the ${where}` && l.offset === offset);
}

test('one read gathers holes, the write cache, cached pieces and pieces from the backend', async (t) => {
  const env = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
  const pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces are fetched and cached
  await pool.createFile('/d', 0o644, 0, 0, 4 * MiB);
  const v = pool.vdisk('/d');
  const want = Buffer.alloc(4 * MiB);
  const put = async (off: number, b: Buffer): Promise<void> => {
    await v.write(off, b);
    b.copy(want, off);
  };
  for (let off = 0; off < MiB; off += 64 * 1024) await put(off, pattern(off, 64 * 1024)); // SCOs 1-4
  await evictAll(env, pool, [v]);
  emptyReadCache(pool);
  t.true((await v.read(0, 128 * 1024)).equals(want.subarray(0, 128 * 1024)), 'piece 0 of SCO 1 into the read cache');
  await put(MiB + 1000, pattern(7, MiB / 2)); // in the write cache only
  t.true(localScos(env, v).length > 0, 'the newest data is in the write cache');
  // [1.5 MiB + 1000, 2 MiB) and beyond: holes
  const before = pool.cacheStats();
  const got = await v.read(100, 2 * MiB);
  const after = pool.cacheStats();
  t.true(got.equals(want.subarray(100, 100 + 2 * MiB)), 'the bytes of holes, write cache, read cache and backend');
  t.true(after.readCacheHits > before.readCacheHits, 'a cached piece was read');
  t.true(after.readCacheMisses > before.readCacheMisses, 'pieces were fetched from the backend');
  // the same through readInto into a window of a larger buffer
  const big = Buffer.alloc(2 * MiB + 77, 0xee);
  const n = await v.readInto(big.subarray(33, 33 + 2 * MiB), 100);
  t.is(n, 2 * MiB);
  t.true(big.subarray(33, 33 + n).equals(want.subarray(100, 100 + 2 * MiB)), 'readInto: the same bytes');
  t.true(big.subarray(0, 33).every((x) => x === 0xee) && big.subarray(33 + n).every((x) => x === 0xee), 'readInto wrote only its window');
});

test('readInto cuts at the size, leaves the rest of the buffer alone, and reads nothing at or past the end', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const size = 3 * CS + 10;
  await pool.createFile('/d', 0o644, 0, 0, size);
  const v = pool.vdisk('/d');
  const data = pattern(5, size);
  await v.write(0, data);
  const buf = Buffer.alloc(5 * CS, 0x5a);
  t.is(await v.readInto(buf, CS + 3), size - CS - 3, 'cut to the size');
  t.true(buf.subarray(0, size - CS - 3).equals(data.subarray(CS + 3)));
  t.true(buf.subarray(size - CS - 3).every((x) => x === 0x5a), 'past the size: untouched');
  t.is(await v.readInto(buf, size), 0, 'at the size');
  t.is(await v.readInto(buf, size + 5 * CS), 0, 'past the size');
  t.is(await v.readInto(Buffer.alloc(0), 0), 0, 'an empty buffer');
  t.is(await codeOf(v.readInto(buf, -1)), 'INVALID', 'a negative offset');
  // holes inside a window are zeros even when the buffer held something else
  await pool.createFile('/h', 0o644, 0, 0, 4 * CS);
  const h = pool.vdisk('/h');
  await h.write(CS, pattern(6, 10));
  const dirty = Buffer.alloc(4 * CS, 0xff);
  t.is(await h.readInto(dirty, 0), 4 * CS);
  const ref = Buffer.alloc(4 * CS);
  pattern(6, 10).copy(ref, CS);
  t.true(dirty.equals(ref), 'holes and the rest of a partly written cluster read as zeros');
});

test('a flipped byte in a backend SCO inside a large parallel read: CHECKSUM, logged, the rest reads right', async (t) => {
  const lines = captureLog(t);
  const env = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
  const pool = await env.open();
  const { v, data } = await scattered(pool, 512);
  await evictAll(env, pool, [v]);
  emptyReadCache(pool);
  const id = v.info().id;
  // a slot of the newest SCOs (the scattered writes), so that it is what the map points at
  const scos = fs.readdirSync(path.join(env.backendDir, 'vdisks', id, 'sco')).sort();
  const file = path.join(env.backendDir, 'vdisks', id, 'sco', scos[scos.length - 3]);
  const bad = slotAddress(file, 40);
  flipByte(file, 40 * SLOT_SIZE + HEADER + 1000);
  await aroundBad(t, v, data, bad, 'backend');
  t.true(checksumLogged(lines, 'backend', bad * CS), 'the checksum error is logged with its offset');
  await aroundBad(t, v, data, bad, 'again (the bad piece is not kept as good)');
});

test('a flipped byte in a write-cache SCO not yet uploaded inside a large read: CHECKSUM, logged, the rest reads right', async (t) => {
  const lines = captureLog(t);
  const env = poolEnv(t, { scoClusters: 64, tlogScos: 1000 }); // no TLog closes: nothing is uploaded
  const pool = await env.open();
  const { v, data } = await scattered(pool, 512);
  const id = v.info().id;
  const file = path.join(env.state, 'wc', id, 'sco', scoName(14));
  const bad = slotAddress(file, 9);
  flipByte(file, 9 * SLOT_SIZE + HEADER + 5);
  await aroundBad(t, v, data, bad, 'write cache');
  t.true(checksumLogged(lines, 'write cache', bad * CS), 'the checksum error is logged with its offset');
});

test('a flipped byte in a write-cache SCO that is in the backend too: a large read is mended from the backend copy', async (t) => {
  const lines = captureLog(t);
  const env = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
  const pool = await env.open();
  const { v, data } = await scattered(pool, 512);
  await pool.syncToBackend();
  const id = v.info().id;
  const file = path.join(env.state, 'wc', id, 'sco', scoName(12));
  t.true(fs.existsSync(file), 'the SCO is still in the write cache');
  flipByte(file, 20 * SLOT_SIZE + HEADER + 7);
  t.true((await v.read(0, data.length)).equals(data), 'the right bytes, from the backend copy');
  t.true(lines.some((l) => l.message === 'a SCO in the write cache is damaged; reading the damaged slots from the backend copy'), 'the damage is logged');
  t.true((await v.read(0, data.length)).equals(data), 'and again (the local copy was mended)');
});

test('a flipped byte in a read-cache piece inside a large read: fetched again, the right bytes', async (t) => {
  const env = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
  const pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces are fetched and cached
  const { v, data } = await scattered(pool, 512);
  await evictAll(env, pool, [v]);
  emptyReadCache(pool);
  t.true((await v.read(0, data.length)).equals(data), 'cold: every piece fetched');
  const rc = path.join(env.state, 'rc');
  const pieces = fs.readdirSync(rc).filter((n) => !n.startsWith('.')).sort();
  t.true(pieces.length > 4);
  for (const p of [pieces[1], pieces[pieces.length - 2]]) flipByte(path.join(rc, p), 3 * SLOT_SIZE + HEADER + 11);
  t.true((await v.read(0, data.length)).equals(data), 'warm, two pieces damaged: still the right bytes');
  const window = Buffer.alloc(data.length + 10);
  t.is(await v.readInto(window.subarray(5, 5 + data.length), 0), data.length);
  t.true(window.subarray(5, 5 + data.length).equals(data), 'readInto too');
});

test('the file backend on the state directory\'s filesystem is read in place; on another one, through the read cache', async (t) => {
  const shm = '/dev/shm';
  const { v: sameV, data, env, pool } = await (async () => {
    const env = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
    const pool = await env.open();
    const { v, data } = await scattered(pool, 512);
    await evictAll(env, pool, [v]);
    emptyReadCache(pool);
    return { v, data, env, pool };
  })();
  t.true((await sameV.read(0, data.length)).equals(data), 'in place: the right bytes');
  t.true(impl(sameV).readCache.inPlaceReads > 0, 'in place: the object files were read');
  t.deepEqual(fs.readdirSync(path.join(env.state, 'rc')), [], 'in place: nothing copied into the read cache');
  t.is(pool.cacheStats().readCacheMisses, 0);
  // another filesystem: tmpfs under /dev/shm (when it is one; this machine's tests run as root on Linux)
  if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(env.state).dev) {
    t.fail(`${shm} is missing or on the same filesystem as ${env.state}: cannot test a backend on another filesystem`);
    return;
  }
  const other = poolEnv(t, { scoClusters: 64, tlogScos: 2 });
  const backendDir = fs.mkdtempSync(path.join(shm, 'vpoolfs-inplace-'));
  t.teardown(() => fs.rmSync(backendDir, { recursive: true, force: true }));
  const pool2 = await other.open({ backendUrl: `file://${backendDir}` });
  const { v, data: data2 } = await scattered(pool2, 512);
  await evictAll(other, pool2, [v]);
  emptyReadCache(pool2);
  t.true((await v.read(0, data2.length)).equals(data2), 'another filesystem: the right bytes');
  t.true((await v.read(0, data2.length)).equals(data2), 'another filesystem, warm: the right bytes');
  const stats = pool2.cacheStats();
  t.true(stats.readCacheMisses > 0 && stats.readCacheHits > 0, `another filesystem: pieces fetched and cached (hits ${stats.readCacheHits}, misses ${stats.readCacheMisses})`);
  t.is(impl(v).readCache.inPlaceReads, 0, 'another filesystem: nothing read in place');
});
