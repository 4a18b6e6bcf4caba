/**
 * Read-ahead (volume/datapath/read/read-ahead.ts): sequential reads from the backend fetch the pieces ahead; random reads
 * fetch nothing extra; a read never waits for a prefetch it does not need (prefetch GETs held at a gate
 * while other reads complete); and a prefetched piece never serves stale data after an overwrite — every
 * read plans from the cluster map as it is when it runs. No timing: the state after the prefetches is
 * awaited (ReadAhead.idle), and GETs are counted.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import type { VDisk, VPool } from '../volume/types.js';
import { CS, pattern, poolEnv, type PoolEnv } from './helpers/vpool.js';
import { emptyReadCache, evictAll, heldReads, impl, type HeldReads } from './helpers/readpath.js';

const MiB = 2 ** 20;
const SCO = 64; // clusters a SCO: 256 KiB of data, two read-cache pieces
const scoName = (n: number): string => n.toString(16).padStart(8, '0');

/**
 * /d of 8 MiB written sequentially (SCO n holds clusters (n-1)*64 .. n*64-1, checked against the slot
 * headers), then every SCO evicted and the read cache emptied: all reads go to the backend.
 */
async function coldDisk(env: PoolEnv, pool: VPool): Promise<{ v: VDisk; data: Buffer; id: string }> {
  await pool.createFile('/d', 0o644, 0, 0, 8 * MiB);
  const v = pool.vdisk('/d');
  const data = pattern(3, 8 * MiB);
  for (let off = 0; off < data.length; off += MiB) await v.write(off, data.subarray(off, off + MiB));
  await evictAll(env, pool, [v]);
  emptyReadCache(pool);
  const id = v.info().id;
  for (const n of [1, 9, 32]) {
    const b = Buffer.alloc(16);
    const fd = fs.openSync(path.join(env.backendDir, 'vdisks', id, 'sco', scoName(n)), 'r');
    fs.readSync(fd, b, 0, 16, 0);
    fs.closeSync(fd);
    if (b.readUInt32LE(8) !== (n - 1) * SCO) throw new Error(`SCO ${n} starts with cluster ${b.readUInt32LE(8)}, the test expects ${(n - 1) * SCO}`);
  }
  return { v, data, id };
}

/** The SCO number of a backend SCO key. */
const scoOfKey = (key: string): number => parseInt(key.slice(key.lastIndexOf('/') + 1), 16);

async function open(t: import('ava').ExecutionContext): Promise<{ env: PoolEnv; pool: VPool; store: HeldReads }> {
  const env = poolEnv(t, { scoClusters: SCO, tlogScos: 2 });
  const store = heldReads(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: store });
  return { env, pool, store };
}

test('a cold sequential read fetches the pieces ahead; the reads then find them cached, each fetched once', async (t) => {
  const { env, pool, store } = await open(t);
  const { v, data } = await coldDisk(env, pool);
  store.ranges.clear();
  for (let off = 0; off < 2 * MiB; off += 256 * 1024) t.true((await v.read(off, 256 * 1024)).equals(data.subarray(off, off + 256 * 1024)));
  const ra = impl(v).readAhead!;
  await ra.idle();
  t.true(ra.fetched > 0, `read-ahead fetched ${ra.fetched} pieces`);
  // the range just ahead (SCO 9: [2 MiB, 2.25 MiB)) is in the read cache now: reading it costs no GET
  const sco9 = [...store.ranges.keys()].find((k) => scoOfKey(k) === 9);
  t.is(sco9 === undefined ? 0 : store.ranges.get(sco9), 2, 'both pieces of SCO 9 were prefetched');
  t.true((await v.read(2 * MiB, 256 * 1024)).equals(data.subarray(2 * MiB, 2 * MiB + 256 * 1024)));
  t.is(store.ranges.get(sco9!), 2, 'reading them took no GET');
  for (let off = 2 * MiB + 256 * 1024; off < data.length; off += 256 * 1024) {
    t.true((await v.read(off, 256 * 1024)).equals(data.subarray(off, off + 256 * 1024)), `bytes at ${off}`);
  }
  await ra.idle();
  // 32 SCOs of two pieces: 64 pieces, none fetched twice
  t.is(store.ranges.size, 32, 'every SCO read');
  t.true([...store.ranges.values()].every((n) => n === 2), `each piece fetched once: ${JSON.stringify([...store.ranges.values()])}`);
});

test('random reads prefetch nothing', async (t) => {
  const { env, pool, store } = await open(t);
  const { v, data } = await coldDisk(env, pool);
  store.ranges.clear();
  // far apart each time: never within 2 MiB of where the last read ended
  for (const off of [7 * MiB, 0, 5 * MiB, MiB, 3.5 * MiB, 6 * MiB + 12 * CS, 2 * MiB + 3 * CS]) {
    t.true((await v.read(off, 2 * CS)).equals(data.subarray(off, off + 2 * CS)), `bytes at ${off}`);
  }
  t.is(impl(v).readAhead!.fetched, 0, 'no piece prefetched');
  t.is([...store.ranges.values()].reduce((a, b) => a + b, 0), 7, 'one GET per read');
});

test('a read never waits for a prefetch it does not need', async (t) => {
  const { env, pool, store } = await open(t);
  const { v, data } = await coldDisk(env, pool);
  // the pieces of [2 MiB, 4 MiB) (SCOs 9-16) are held at the backend: only read-ahead asks for them
  store.hold((key) => scoOfKey(key) >= 9 && scoOfKey(key) <= 16);
  for (let off = 0; off < 2 * MiB; off += 512 * 1024) t.true((await v.read(off, 512 * 1024)).equals(data.subarray(off, off + 512 * 1024)));
  for (let i = 0; i < 100 && store.held === 0; i++) await new Promise((r) => setImmediate(r));
  t.true(store.held > 0, 'prefetches are waiting at the backend');
  // other reads go on: one needing other pieces from the backend, one of cached pieces, and sequential ones
  // that need no held piece
  t.true((await v.read(6 * MiB, MiB)).equals(data.subarray(6 * MiB, 7 * MiB)), 'a read from the backend elsewhere');
  t.true((await v.read(0, MiB)).equals(data.subarray(0, MiB)), 'a read of cached pieces');
  t.true(store.held > 0, 'the prefetches are still held');
  store.release();
  await impl(v).readAhead!.idle();
  t.true((await v.read(2 * MiB, 2 * MiB)).equals(data.subarray(2 * MiB, 4 * MiB)), 'the prefetched range reads right');
});

test('a prefetched piece never serves stale data: an overwrite of the range ahead is what is read', async (t) => {
  const { env, pool } = await open(t);
  const { v, data } = await coldDisk(env, pool);
  const want = Buffer.from(data);
  const put = async (off: number, b: Buffer): Promise<void> => {
    await v.write(off, b);
    b.copy(want, off);
  };
  // sequential reads: the pieces of the next MiBs are prefetched (old SCOs)
  for (let off = 0; off < 2 * MiB; off += 256 * 1024) await v.read(off, 256 * 1024);
  const ra = impl(v).readAhead!;
  // overwrite inside the range being prefetched, while it may still be in flight
  await put(2 * MiB + 5 * CS, pattern(10, CS));
  await put(2 * MiB + 40 * CS + 17, pattern(11, 3 * CS));
  await ra.idle();
  await put(2 * MiB + 100 * CS, pattern(12, 64 * 1024 + 5));
  for (let i = 0; i < 30; i++) await put(2 * MiB + ((i * 37) % 500) * CS, pattern(100 + i, CS));
  t.true(ra.fetched > 0, 'pieces of the old data were prefetched');
  // from the write cache
  for (let off = 2 * MiB; off < 4 * MiB; off += 256 * 1024) {
    t.true((await v.read(off, 256 * 1024)).equals(want.subarray(off, off + 256 * 1024)), `write cache: bytes at ${off}`);
  }
  // the new SCOs evicted: the new data comes from the backend, the old pieces still sit in the read cache
  await evictAll(env, pool, [v]);
  for (let off = 0; off < 8 * MiB; off += 256 * 1024) {
    t.true((await v.read(off, 256 * 1024)).equals(want.subarray(off, off + 256 * 1024)), `backend: bytes at ${off}`);
  }
  await ra.idle();
  // and again with everything cached, prefetched pieces of both the old and the new SCOs
  for (let off = 0; off < 8 * MiB; off += MiB) {
    t.true((await v.read(off, MiB)).equals(want.subarray(off, off + MiB)), `read cache: bytes at ${off}`);
  }
});
