/**
 * Corruption: a flipped byte in a SCO (in the backend, in the write cache, in both), in a TLog in the
 * backend, or in a read-cache piece. Reads of exactly the clusters the damaged slot holds fail with
 * CHECKSUM (never wrong bytes); every other cluster reads right; a good copy elsewhere is used; the
 * vPool keeps serving; a damaged TLog is recovered from the self-describing SCOs and logged.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { VDisk, VPool } from '../volume/types.js';
import { openBlobStore } from '../volume/backend/index.js';
import { gatedStore } from './helpers/gated-store.js';
import { CS, flipByte, gone, pattern, poolEnv, SLOT_SIZE, type PoolEnv } from './helpers/vpool.js';
import { copyInBackend } from './helpers/readpath.js';
import { captureLog, slotAddress } from './helpers/slot-probe.js';

const HEADER = 32;
/** Slot `s`'s data byte 100, and its address field. */
const dataByte = (s: number): number => s * SLOT_SIZE + HEADER + 100;
const addressByte = (s: number): number => s * SLOT_SIZE + 8;
const scoName = (n: number): string => n.toString(16).padStart(8, '0');



async function logged(lines: Array<Record<string, unknown>>, pred: (l: Record<string, unknown>) => boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (lines.some(pred)) return true;
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

async function codeOfRead(v: VDisk, offset: number, length: number): Promise<string | null> {
  try {
    await v.read(offset, length);
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/**
 * Reads every cluster of `v` one by one: `bad` ones must fail with CHECKSUM, all others return
 * `data`'s bytes. A read spanning a bad cluster fails too; a 1-byte read inside it fails.
 */
async function checkClusters(t: ExecutionContext, v: VDisk, data: Buffer, bad: Set<number>, what: string): Promise<void> {
  const n = data.length / CS;
  for (let a = 0; a < n; a++) {
    if (bad.has(a)) {
      t.is(await codeOfRead(v, a * CS, CS), 'CHECKSUM', `${what}: cluster ${a} (damaged)`);
      t.is(await codeOfRead(v, a * CS + 77, 1), 'CHECKSUM', `${what}: 1 byte of cluster ${a} (damaged)`);
    } else {
      let got: Buffer | undefined;
      try {
        got = await v.read(a * CS, CS);
      } catch (err) {
        t.fail(`${what}: cluster ${a} failed: ${(err as Error).message}`);
        continue;
      }
      t.true(got.equals(data.subarray(a * CS, (a + 1) * CS)), `${what}: cluster ${a} bytes`);
    }
  }
  for (const a of bad) {
    if (a > 0) t.is(await codeOfRead(v, (a - 1) * CS, 3 * CS), 'CHECKSUM', `${what}: a read across cluster ${a}`);
  }
}

/** The vPool still serves: a new vDisk takes a write and reads it back; the damaged one takes writes too. */
async function stillServes(t: ExecutionContext, pool: VPool, v: VDisk, badCluster: number): Promise<void> {
  const name = `/alive-${Math.random().toString(36).slice(2)}`;
  await pool.createFile(name, 0o644, 0, 0, 0);
  const w = pool.vdisk(name);
  await w.write(CS + 5, pattern(99, 3 * CS));
  t.true((await w.read(CS + 5, 3 * CS)).equals(pattern(99, 3 * CS)));
  // a whole-cluster overwrite heals the damaged cluster
  const fresh = pattern(1234, CS);
  await v.write(badCluster * CS, fresh);
  t.true((await v.read(badCluster * CS, CS)).equals(fresh), 'the overwritten cluster reads its new bytes');
}

/** A vDisk /c with 24 clusters of distinct data (3 SCOs of 8) written one cluster at a time. */
async function populate(pool: VPool, clusters = 24): Promise<{ v: VDisk; id: string; data: Buffer }> {
  await pool.createFile('/c', 0o644, 0, 0, clusters * CS); // the size first: the TLogs' resize record comes before any SCO
  const v = pool.vdisk('/c');
  const data = pattern(42, clusters * CS);
  for (let a = 0; a < clusters; a++) await v.write(a * CS, data.subarray(a * CS, (a + 1) * CS));
  return { v, id: v.info().id, data };
}

const backendSco = (env: PoolEnv, id: string, sco: number): string => path.join(env.backendDir, 'vdisks', id, 'sco', scoName(sco));
const backendTlog = (env: PoolEnv, id: string, tlog: number): string => path.join(env.backendDir, 'vdisks', id, 'tlog', scoName(tlog));
const localSco = (env: PoolEnv, id: string, sco: number): string => path.join(env.state, 'wc', id, 'sco', scoName(sco));

test('(a) a flipped byte in a backend SCO, nothing local: CHECKSUM for exactly that cluster (backend restart)', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const { id, data } = await populate(pool);
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true }); // no write cache, no read cache: all from the backend
  const file = backendSco(env, id, 2);
  const bad = slotAddress(file, 5);
  flipByte(file, dataByte(5));
  pool = await env.open();
  const v = pool.vdisk('/c');
  await checkClusters(t, v, data, new Set([bad]), 'backend restart');
  await checkClusters(t, v, data, new Set([bad]), 'again (a bad piece must not be cached as good)');
  await stillServes(t, pool, v, bad);
  // the healed cluster and all the others survive a restart; the vPool closes cleanly
  data.set(pattern(1234, CS), bad * CS);
  await env.close(pool);
  pool = await env.open();
  await checkClusters(t, pool.vdisk('/c'), data, new Set(), 'after healing and a restart');
});

test('(a) a flipped byte in a backend SCO evicted from a tiny write cache: CHECKSUM for that cluster only', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open({ writeCacheBytes: 3 * 8 * SLOT_SIZE }); // 3 SCOs: writing 6 evicts the first ones
  const { v, id, data } = await populate(pool, 48);
  await v.syncToBackend();
  t.true(await gone(localSco(env, id, 1)), 'SCO 1 was evicted from the write cache');
  t.true(fs.existsSync(backendSco(env, id, 1)));
  const file = backendSco(env, id, 1);
  const bad = slotAddress(file, 3);
  flipByte(file, dataByte(3));
  t.is(fs.readdirSync(path.join(env.state, 'rc')).length, 0, 'the read cache is empty');
  await checkClusters(t, v, data, new Set([bad]), 'evicted');
  await stillServes(t, pool, v, bad);
  data.set(pattern(1234, CS), bad * CS);
  await env.close(pool);
  pool = await env.open({ writeCacheBytes: 3 * 8 * SLOT_SIZE });
  await checkClusters(t, pool.vdisk('/c'), data, new Set(), 'after healing and a local restart');
});

test('(b) a flipped byte in a cached SCO not yet uploaded: CHECKSUM for that cluster, others fine', async (t) => {
  const env = poolEnv(t, { tlogScos: 1000, scoMaxAgeMs: 3_600_000 });
  const pool = await env.open();
  const { v, id, data } = await populate(pool, 20); // SCOs 1 and 2 closed, 3 open (4 clusters)
  t.false(fs.existsSync(backendSco(env, id, 1)), 'nothing shipped');
  const closed = localSco(env, id, 1);
  const open = localSco(env, id, 3);
  const badClosed = slotAddress(closed, 6);
  const badOpen = slotAddress(open, 1);
  flipByte(closed, dataByte(6));
  flipByte(open, addressByte(1));
  await checkClusters(t, v, data, new Set([badClosed, badOpen]), 'write cache');
  t.true(fs.existsSync(closed), 'the only copy is kept (not dropped as if the backend had it)');
  // shipped as it is, the damage stays visible: after a backend restart the same clusters fail
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open();
  await checkClusters(t, again.vdisk('/c'), data, new Set([badClosed, badOpen]), 'shipped, backend restart');
  await stillServes(t, again, again.vdisk('/c'), badClosed);
});

test('(b) a flipped byte mid-way in the open SCO loses none of the sound slots after it on a local restart', async (t) => {
  const env = poolEnv(t, { tlogScos: 1000, scoMaxAgeMs: 3_600_000 });
  const pool = await env.open();
  const { id, data } = await populate(pool, 14); // SCO 1 closed, SCO 2 open with 6 clusters
  const open = localSco(env, id, 2);
  const bad = slotAddress(open, 2);
  flipByte(open, dataByte(2));
  // the process goes away now: its state and backend are what is on disk at this moment (every write
  // went to the kernel before it was acknowledged, lmdb commits are whole); slots 3..5 are sound
  const crash = path.join(env.root, 'crash');
  fs.cpSync(env.state, path.join(crash, 'state'), { recursive: true, filter: (src) => !src.endsWith('lock.mdb') });
  fs.cpSync(env.backendDir, path.join(crash, 'backend'), { recursive: true });
  await env.close(pool);
  const again = await env.open({ stateDir: path.join(crash, 'state'), backendUrl: `file://${path.join(crash, 'backend')}` });
  const v = again.vdisk('/c');
  const wrong: string[] = [];
  for (let a = 0; a < 14; a++) {
    if (a === bad) continue;
    try {
      const got = await v.read(a * CS, CS);
      if (!got.equals(data.subarray(a * CS, (a + 1) * CS))) wrong.push(`cluster ${a}: ${got.equals(Buffer.alloc(CS)) ? 'zeros' : 'wrong bytes'}`);
    } catch (err) {
      wrong.push(`cluster ${a}: ${(err as Error).message}`);
    }
  }
  t.deepEqual(wrong, [], 'every sound, acknowledged cluster reads right after the restart');
  // the damaged cluster must not read as if it had never been written
  const got = await v.read(bad * CS, CS).then((b) => (b.equals(Buffer.alloc(CS)) ? 'zeros' : 'bytes'), (err: { code?: string }) => err.code);
  t.is(got, 'CHECKSUM', `the damaged cluster ${bad}`);
});

test('(c) a flipped byte in a cached SCO that is in the backend: served from the backend copy', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const { v, id, data } = await populate(pool);
  await v.syncToBackend();
  const file = localSco(env, id, 2);
  t.true(fs.existsSync(file), 'still in the write cache');
  flipByte(file, dataByte(4));
  await checkClusters(t, v, data, new Set(), 'local copy damaged, backend copy sound');
  await checkClusters(t, v, data, new Set(), 'again');
  await env.close(pool);
  const again = await env.open(); // a local restart: whatever is left of the local copy is still not trusted blindly
  await checkClusters(t, again.vdisk('/c'), data, new Set(), 'after a local restart');
  await stillServes(t, again, again.vdisk('/c'), 0);
});

test('(d) a flipped byte in a backend TLog: the vDisk opens from its SCOs, data intact, the damage logged', async (t) => {
  for (const tlog of [1, 2]) {
    const env = poolEnv(t);
    let pool = await env.open();
    const { v, id, data } = await populate(pool, 40); // TLogs of 2 SCOs: TLog 1 = SCOs 1-2, TLog 2 = SCOs 3-4, TLog 3 = SCO 5
    // overwrites across TLogs: clusters 0..7 (SCO 1, TLog 1) rewritten into SCO 6 (TLog 3): the order must hold
    const newer = pattern(7, 8 * CS);
    await v.write(0, newer);
    newer.copy(data, 0);
    await env.close(pool);
    const file = backendTlog(env, id, tlog);
    // the last two records are the SCO records of its two SCOs (8 + 13 + 8 × 8 = 85 bytes each):
    // damage the first of them, so that both SCOs must come from the SCOs themselves
    const size = fs.statSync(file).size;
    flipByte(file, size - 2 * 85 + 30);
    // the clean stop wrote a map checkpoint covering that TLog: a rebuild would start from it and never read
    // the damaged TLog (test/checkpoint-*.test.ts). Here the TLog must be replayed: no checkpoint
    fs.rmSync(path.join(env.backendDir, 'vdisks', id, 'checkpoint'), { recursive: true, force: true });
    fs.rmSync(env.state, { recursive: true, force: true });
    const lines = captureLog(t);
    pool = await env.open();
    const w = pool.vdisk('/c');
    t.is(w.size, 40 * CS, `TLog ${tlog}: size`);
    t.is(w.allocatedBytes, 40 * CS, `TLog ${tlog}: allocated`);
    await checkClusters(t, w, data, new Set(), `TLog ${tlog} damaged`);
    t.true(await logged(lines, (l) => l.level === 'error' && JSON.stringify(l).includes(`vdisks/${id}/tlog/${scoName(tlog)}`)),
      `TLog ${tlog}: the damage is logged with the object's key`);
    await env.close(pool);
  }
});

test('(e) a flipped byte in a read-cache piece: refetched, right bytes', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const { id, data } = await populate(pool);
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  const v = pool.vdisk('/c');
  await checkClusters(t, v, data, new Set(), 'cold'); // fills the read cache
  const rc = path.join(env.state, 'rc');
  const pieces = fs.readdirSync(rc).filter((n) => !n.startsWith('.') && n.includes(id));
  t.true(pieces.length >= 3, `read-cache pieces: ${pieces.join(', ')}`);
  for (const p of pieces) flipByte(path.join(rc, p), dataByte(2)); // slot 2 of every piece
  for (const p of pieces) flipByte(path.join(rc, p), addressByte(5));
  await checkClusters(t, v, data, new Set(), 'damaged read cache');
  // the pieces were replaced by sound copies from the backend
  const sco1 = fs.readFileSync(backendSco(env, id, 1));
  const piece1 = pieces.find((p) => p.includes(`sco_${scoName(1)}`))!;
  t.true(fs.readFileSync(path.join(rc, piece1)).equals(sco1), 'SCO 1\'s piece is the backend\'s bytes again');
});

test('(f) a flipped byte in both copies of a slot (write cache and backend): CHECKSUM for that cluster only', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const { v, id, data } = await populate(pool);
  await v.syncToBackend();
  const local = localSco(env, id, 3);
  const remote = backendSco(env, id, 3);
  const bad = slotAddress(remote, 7);
  flipByte(local, dataByte(7));
  flipByte(remote, addressByte(7));
  await checkClusters(t, v, data, new Set([bad]), 'both copies damaged');
  await stillServes(t, pool, v, bad);
});

test('(f) different slots damaged in the two copies of a SCO: each cluster is read from its sound copy', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const { v, id, data } = await populate(pool);
  await v.syncToBackend();
  const local = localSco(env, id, 2);
  const remote = backendSco(env, id, 2);
  flipByte(local, dataByte(1)); // the local copy is bad at slot 1, the backend one at slot 6
  flipByte(remote, dataByte(6));
  // a good copy of every cluster exists: none may fail, whatever the order of the reads
  await checkClusters(t, v, data, new Set(), 'each slot sound in one copy');
});

test('(g) a flipped byte in a closed TLog still in the write cache: no cluster it covers reads wrong bytes, before or after upload', async (t) => {
  const env = poolEnv(t, { tlogScos: 2, scoMaxAgeMs: 3_600_000 });
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  gated.pause(); // nothing reaches the backend: the closed TLogs wait in the write cache
  const { id, data } = await populate(pool, 40); // TLog 1 = SCOs 1-2, TLog 2 = SCOs 3-4 closed; SCO 5 closed in the open TLog 3
  const tlog1 = path.join(env.state, 'wc', id, 'tlog', scoName(1));
  t.true(fs.existsSync(tlog1), 'TLog 1 is closed and waits for upload');
  // the process goes away; then TLog 1 is found damaged in its first SCO record
  const crash = path.join(env.root, 'crash');
  fs.cpSync(env.state, path.join(crash, 'state'), { recursive: true, filter: (src) => !src.endsWith('lock.mdb') });
  fs.cpSync(env.backendDir, path.join(crash, 'backend'), { recursive: true });
  gated.resume();
  await env.close(pool);
  const crashTlog1 = path.join(crash, 'state', 'wc', id, 'tlog', scoName(1));
  flipByte(crashTlog1, fs.statSync(crashTlog1).size - 2 * 85 + 30);
  const opts = { stateDir: path.join(crash, 'state'), backendUrl: `file://${path.join(crash, 'backend')}` };
  const lines = captureLog(t);
  let again = await env.open(opts);
  /** Clusters that read wrong bytes without an error (a CHECKSUM error is acceptable for the damaged TLog's clusters). */
  const silentlyWrong = async (v: VDisk): Promise<string[]> => {
    const out: string[] = [];
    for (let a = 0; a < 40; a++) {
      try {
        const got = await v.read(a * CS, CS);
        if (!got.equals(data.subarray(a * CS, (a + 1) * CS))) out.push(`cluster ${a}: ${got.equals(Buffer.alloc(CS)) ? 'zeros' : 'wrong bytes'}`);
      } catch (err) {
        if ((err as { code?: string }).code !== 'CHECKSUM' || a >= 16) out.push(`cluster ${a}: ${(err as Error).message}`);
      }
    }
    return out;
  };
  t.deepEqual(await silentlyWrong(again.vdisk('/c')), [], 'after a local restart');
  t.true(await logged(lines, (l) => l.level === 'error' && JSON.stringify(l).includes('TLog')), 'the damage is logged');
  await env.close(again);
  fs.rmSync(opts.stateDir, { recursive: true, force: true });
  again = await env.open(opts);
  t.deepEqual(await silentlyWrong(again.vdisk('/c')), [], 'after the upload and a backend restart');
});

test('(e) a truncated read-cache piece (a host crash after its rename): refetched, right bytes', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const { id, data } = await populate(pool);
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  await checkClusters(t, pool.vdisk('/c'), data, new Set(), 'cold'); // fills the read cache
  await env.close(pool);
  const rc = path.join(env.state, 'rc');
  const pieces = fs.readdirSync(rc).filter((n) => !n.startsWith('.') && n.includes(id)).sort();
  t.true(pieces.length >= 3);
  fs.truncateSync(path.join(rc, pieces[0]), 0); // renamed but its data never reached the disk
  fs.truncateSync(path.join(rc, pieces[1]), 3 * SLOT_SIZE + 100); // half written
  pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  await checkClusters(t, pool.vdisk('/c'), data, new Set(), 'short read-cache pieces');
});

test('(h) a flipped byte mid-way in the open TLog (the journal) after a crash: every cluster still reads right', async (t) => {
  const env = poolEnv(t, { tlogScos: 1000, scoMaxAgeMs: 3_600_000 });
  const pool = await env.open();
  const { id, data } = await populate(pool, 36); // SCOs 1-4 closed (records in the open TLog 1), SCO 5 open
  const journal = path.join(env.state, 'wc', id, 'tlog', `${scoName(1)}.open`);
  t.true(fs.existsSync(journal));
  const crash = path.join(env.root, 'crash');
  fs.cpSync(env.state, path.join(crash, 'state'), { recursive: true, filter: (src) => !src.endsWith('lock.mdb') });
  fs.cpSync(env.backendDir, path.join(crash, 'backend'), { recursive: true });
  await env.close(pool);
  const copy = path.join(crash, 'state', 'wc', id, 'tlog', `${scoName(1)}.open`);
  flipByte(copy, fs.statSync(copy).size - 3 * 85 + 30); // the record of SCO 2 of 4: records of SCOs 2-4 are cut
  const again = await env.open({ stateDir: path.join(crash, 'state'), backendUrl: `file://${path.join(crash, 'backend')}` });
  const v = again.vdisk('/c');
  t.is(v.size, 36 * CS);
  t.is(v.allocatedBytes, 36 * CS);
  await checkClusters(t, v, data, new Set(), 'journal damaged');
  await env.close(again);
  // and all of it reached the backend
  fs.rmSync(path.join(crash, 'state'), { recursive: true, force: true });
  const rebuilt = await env.open({ stateDir: path.join(crash, 'state'), backendUrl: `file://${path.join(crash, 'backend')}` });
  await checkClusters(t, rebuilt.vdisk('/c'), data, new Set(), 'journal damaged, then a backend restart');
});
