/**
 * Model-based tests of the read path (volume/datapath/read/read-path.ts): seeded random writes (aligned and unaligned,
 * over many small SCOs) with ships, evictions and read-cache flushes in between, so that one read gathers
 * clusters from the write cache, the read cache and the backend at once; a clone made half-way reads its
 * parent's namespace. Random reads of random lengths (up to 1.5 MiB) through read() and through readInto()
 * into an offset window of a larger buffer are compared byte for byte with RefDisk, and the bytes around the
 * window must stay untouched.
 * The seed is printed; VPOOLFS_SEED=<n> replays a run; VPOOLFS_READPATH_ROUNDS=<k> runs k times the ops.
 */
import test, { type ExecutionContext } from 'ava';
import type { VDisk } from '../volume/types.js';
import { pattern, RefDisk, rng } from './helpers/ref-disk.js';
import { CS, poolEnv, SLOT_SIZE } from './helpers/vpool.js';
import { copyInBackend, emptyReadCache, evictAll, impl, localScos } from './helpers/readpath.js';
import { runSeed } from './helpers/seed.js';

const MiB = 2 ** 20;
const SEED = runSeed();
const ROUNDS = Number(process.env.VPOOLFS_READPATH_ROUNDS ?? 1);

/** Reads [offset, offset+length) of `v` both ways and compares with `ref`; false (after t.fail) on a difference. */
async function check(t: ExecutionContext, v: VDisk, ref: RefDisk, offset: number, length: number, r: () => number, what: string): Promise<boolean> {
  const want = ref.read(offset, length);
  if (r() < 0.5) {
    const got = await v.read(offset, length);
    if (!got.equals(want)) {
      t.fail(`${what}: read(${offset}, ${length}) differs from the reference (${got.length} vs ${want.length} bytes, first difference at ${firstDiff(got, want)})`);
      return false;
    }
    return true;
  }
  // readInto a window of a larger buffer whose other bytes are a sentinel
  const before = Math.floor(r() * 300);
  const after = Math.floor(r() * 300);
  const big = Buffer.alloc(before + length + after, 0xa5);
  const window = big.subarray(before, before + length);
  const n = await v.readInto(window, offset);
  if (n !== want.length) {
    t.fail(`${what}: readInto at ${offset} of ${length} bytes filled ${n}, the size allows ${want.length}`);
    return false;
  }
  if (!window.subarray(0, n).equals(want)) {
    t.fail(`${what}: readInto(${offset}, ${length}) differs from the reference at ${firstDiff(window.subarray(0, n), want)}`);
    return false;
  }
  for (const [from, to] of [[0, before], [before + n, big.length]]) {
    for (let i = from; i < to; i++) {
      if (big[i] !== 0xa5) {
        t.fail(`${what}: readInto(${offset}, ${length}) wrote outside its window (byte ${i - before} relative to it)`);
        return false;
      }
    }
  }
  return true;
}

function firstDiff(a: Buffer, b: Buffer): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

/** A read length: small, around 1 MiB, or past it. */
function pickLength(r: () => number): number {
  const k = r();
  if (k < 0.3) return 1 + Math.floor(r() * 3 * CS);
  if (k < 0.55) return Math.floor(r() * 64) * CS || CS;
  if (k < 0.85) return 1 + Math.floor(r() * (MiB + 2 * CS));
  return MiB + Math.floor(r() * MiB / 2);
}

/**
 * `inPlace`: the file backend as it is, whose object files the read path reads in place (read-cache.ts);
 * else the same backend seen without localPath, so that pieces are fetched into the read cache.
 */
async function randomReads(t: ExecutionContext, inPlace: boolean): Promise<void> {
  t.log(`seed ${SEED} (VPOOLFS_SEED=${SEED} replays this run)`);
  const r = rng(SEED);
  const SCO = 64; // two read-cache pieces a SCO: runs are cut at piece edges
  const env = poolEnv(t, {
    scoClusters: SCO, tlogScos: 2,
    writeCacheBytes: 10 * SCO * SLOT_SIZE, // writes keep evicting what is in the backend
    readCacheBytes: 40 * 32 * SLOT_SIZE, // 40 pieces: some reads find them, most fetch
  });
  const pool = await env.open(inPlace ? {} : { backend: await copyInBackend(t, env) });
  const SIZE = 6 * MiB + 3 * CS + 123;
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  const disks: Array<{ path: string; v: VDisk; ref: RefDisk }> = [{ path: '/d', v: pool.vdisk('/d'), ref: new RefDisk() }];
  disks[0].ref.resize(SIZE);
  const counts = { writes: 0, reads: 0, ships: 0, evictions: 0, flushes: 0, clones: 0 };
  const OPS = 500 * ROUNDS;
  let seq = 0;
  for (let op = 0; op < OPS; op++) {
    const d = disks[Math.floor(r() * disks.length)];
    const k = r();
    if (op === Math.floor(OPS / 2)) {
      // a clone of /d as it is now: its entries are of depth 1, read from /d's namespace
      await pool.snapshots.clone('/d', '', '/c');
      disks.push({ path: '/c', v: pool.vdisk('/c'), ref: disks[0].ref.cloneChild() });
      counts.clones++;
    } else if (k < 0.4) {
      let offset: number;
      let length: number;
      if (r() < 0.5) {
        offset = Math.floor(r() * (SIZE / CS)) * CS;
        length = (1 + Math.floor(r() * 48)) * CS;
      } else {
        offset = Math.floor(r() * SIZE);
        length = 1 + Math.floor(r() * 100_000);
      }
      if (r() < 0.3) {
        // a burst of 4 KiB writes in a random order: neighbours end up in different SCOs
        for (let i = 0; i < 16; i++) {
          const a = Math.floor(r() * (SIZE / CS));
          const data = pattern(SEED, ++seq, CS);
          await d.v.write(a * CS, data);
          d.ref.write(a * CS, data);
        }
      }
      length = Math.min(length, SIZE - offset);
      if (length > 0) {
        const data = pattern(SEED, ++seq, length);
        await d.v.write(offset, data);
        d.ref.write(offset, data);
      }
      counts.writes++;
    } else if (k < 0.44) {
      await d.v.syncToBackend();
      counts.ships++;
    } else if (k < 0.47) {
      await evictAll(env, pool, disks.map((x) => x.v));
      counts.evictions++;
    } else if (k < 0.5) {
      emptyReadCache(pool);
      counts.flushes++;
    } else {
      const offset = r() < 0.1 ? SIZE - Math.floor(r() * 2 * CS) : Math.floor(r() * SIZE);
      if (!(await check(t, d.v, d.ref, offset, pickLength(r), r, `op ${op} on ${d.path}`))) return;
      counts.reads++;
    }
  }
  // the whole of each vDisk, once with the write cache holding the newest and once from the backend only
  for (const where of ['as left', 'evicted', 'evicted, read cache empty']) {
    if (where === 'evicted') await evictAll(env, pool, disks.map((x) => x.v));
    if (where === 'evicted, read cache empty') emptyReadCache(pool);
    for (const d of disks) {
      for (let off = 0; off < SIZE; off += MiB + 3 * CS) {
        if (!(await check(t, d.v, d.ref, off, MiB + 3 * CS, r, `${where}: ${d.path}`))) return;
      }
    }
  }
  for (const d of disks) t.is(localScos(env, d.v).length, 0, `${d.path}: nothing left in the write cache, all was read from the backend`);
  const stats = pool.cacheStats();
  const inPlaceReads = impl(disks[0].v).readCache.inPlaceReads;
  if (inPlace) {
    t.true(inPlaceReads > 0 && stats.readCacheHits === 0 && stats.readCacheMisses === 0,
      `the backend's files were read in place, the read cache unused (in place ${inPlaceReads}, hits ${stats.readCacheHits}, misses ${stats.readCacheMisses})`);
  } else {
    t.true(stats.readCacheHits > 0 && stats.readCacheMisses > 0 && inPlaceReads === 0, `the read cache served pieces and missed some (hits ${stats.readCacheHits}, misses ${stats.readCacheMisses})`);
  }
  t.log(`ops ${JSON.stringify(counts)}; read cache hits ${stats.readCacheHits}, misses ${stats.readCacheMisses}, in place ${inPlaceReads}`);
}

test('random reads of random lengths match the reference while the data is spread over the write cache, the read cache and the backend', (t) => randomReads(t, false));

test('the same with the file backend read in place: write cache and backend files, no read cache', (t) => randomReads(t, true));
