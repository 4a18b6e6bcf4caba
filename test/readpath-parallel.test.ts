/**
 * Model test of the parallel read path (volume/datapath/slot-readers/slot-readers.ts, read-path.ts handOut): large reads
 * whose runs are shared between the slot reader threads and the main thread must put every cluster in its
 * place. A vDisk of many small SCOs, laid out sequentially then overwritten at random (seeded) in 4 KiB
 * clusters, so that every MiB gathers single slots of dozens of SCOs; a clone made half-way (its inherited
 * clusters read from the parent's namespace); everything evicted, then more random writes left in the write
 * cache: one read mixes write-cache SCOs, backend objects (read in place, or read-cache pieces: both modes)
 * and holes. Reads of 1 MiB and of random lengths/offsets are compared with RefDisk byte for byte. Then bytes
 * of chosen backend slots are flipped: every read covering a damaged cluster fails with CHECKSUM, every
 * other read is still exact (a flipped byte is never data, and a failed run never spills into another's
 * place). The seed is printed; VPOOLFS_SEED=<n> replays; VPOOLFS_READPATH_ROUNDS=<k> makes it k times longer.
 */
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import type { VDisk } from '../volume/types.js';
import { pattern, RefDisk, rng } from './helpers/ref-disk.js';
import { CS, flipByte, poolEnv, SLOT_SIZE } from './helpers/vpool.js';
import { copyInBackend, emptyReadCache, evictAll, impl, localScos } from './helpers/readpath.js';
import { slotReaderStats } from '../volume/datapath/slot-readers/slot-readers.js';
import { captureLog, codeOf } from './helpers/slot-probe.js';
import { runSeed } from './helpers/seed.js';

const MiB = 2 ** 20;
const SEED = runSeed();
const ROUNDS = Number(process.env.VPOOLFS_READPATH_ROUNDS ?? 1);
const HEADER = 32;

/** Where cluster `a` of `v` is stored: the namespace's depth and its SCO and slot; null for a hole. */
function whereIs(v: VDisk, a: number): { depth: number; sco: number; slot: number } | null {
  const map = impl(v).map;
  const sco = map.scoOf(a);
  if (sco === 0) return null;
  const w1 = map.word1Of(a);
  return { depth: (w1 >>> 16) & 0xff, sco, slot: w1 & 0xffff };
}

async function parallelReads(t: ExecutionContext, inPlace: boolean): Promise<void> {
  t.log(`seed ${SEED} (VPOOLFS_SEED=${SEED} replays this run)`);
  const lines = captureLog(t);
  const r = rng(SEED);
  const env = poolEnv(t, { scoClusters: 32, tlogScos: 2, readCacheBytes: 64 * 32 * SLOT_SIZE });
  const pool = await env.open(inPlace ? {} : { backend: await copyInBackend(t, env) });
  const SIZE = 3 * MiB + 5 * CS + 77; // a tail cluster cut short
  const clusters = Math.ceil(SIZE / CS);
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  const d = { v: pool.vdisk('/d'), ref: new RefDisk(), path: '/d' };
  d.ref.resize(SIZE);
  let seq = 0;
  const put = async (x: { v: VDisk; ref: RefDisk }, a: number, n: number): Promise<void> => {
    const len = Math.min(n * CS, SIZE - a * CS);
    const data = pattern(SEED, ++seq, len);
    await x.v.write(a * CS, data);
    x.ref.write(a * CS, data);
  };
  // sequential, leaving a hole of 40 clusters, then every cluster but the hole's once more at random
  for (let a = 0; a < clusters; a += 64) if (a !== 256) await put(d, a, Math.min(64, clusters - a));
  const order = Array.from({ length: clusters }, (_, i) => i).filter((a) => a < 256 || a >= 296);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const half = Math.floor(order.length / 2);
  for (const a of order.slice(0, half)) await put(d, a, 1);
  await pool.snapshots.clone('/d', '', '/c');
  const c = { v: pool.vdisk('/c'), ref: d.ref.cloneChild(), path: '/c' };
  for (const a of order.slice(half)) await put(d, a, 1);
  for (let i = 0; i < 200; i++) await put(c, Math.floor(r() * clusters), 1 + Math.floor(r() * 3));
  const disks = [d, c];
  await evictAll(env, pool, disks.map((x) => x.v));
  emptyReadCache(pool);
  // newer data in the write cache, over what is in the backend
  for (let i = 0; i < 150 * ROUNDS; i++) await put(disks[i % 2], Math.floor(r() * clusters), 1);
  t.true(localScos(env, d.v).length > 0 && localScos(env, c.v).length > 0, 'some of each vDisk is in the write cache');

  const readsBefore = slotReaderStats.runs;
  const check = async (x: typeof d, offset: number, length: number, what: string, bad: Set<number> = new Set()): Promise<boolean> => {
    const want = x.ref.read(offset, length);
    const first = Math.floor(offset / CS);
    const last = Math.floor((offset + Math.max(1, want.length) - 1) / CS);
    let damaged = false;
    for (let a = first; a <= last && want.length > 0; a++) if (bad.has(a)) damaged = true;
    const big = Buffer.alloc(length + 100, 0x5c);
    const p = x.v.readInto(big.subarray(50, 50 + length), offset);
    if (damaged) {
      const code = await codeOf(p);
      if (code !== 'CHECKSUM') t.fail(`${what}: ${x.path} read(${offset}, ${length}) covers a damaged cluster but gave ${code ?? 'data'}`);
      return code === 'CHECKSUM';
    }
    const n = await p;
    const got = big.subarray(50, 50 + n);
    if (n !== want.length || !got.equals(want)) {
      let at = 0;
      while (at < Math.min(n, want.length) && got[at] === want[at]) at++;
      t.fail(`${what}: ${x.path} read(${offset}, ${length}) differs from the reference at byte ${at} (cluster ${Math.floor((offset + at) / CS)})`);
      return false;
    }
    if (!big.subarray(0, 50).every((b) => b === 0x5c) || !big.subarray(50 + n).every((b) => b === 0x5c)) {
      t.fail(`${what}: ${x.path} read(${offset}, ${length}) wrote outside its window`);
      return false;
    }
    return true;
  };
  const pass = async (what: string, bad: Map<VDisk, Set<number>> = new Map()): Promise<boolean> => {
    for (const x of disks) {
      // some small reads first: in read-cache mode they leave some pieces cached, so big reads mix sources
      for (let i = 0; i < 8; i++) if (!(await check(x, Math.floor(r() * SIZE), 1 + Math.floor(r() * 3 * CS), `${what}, small`, bad.get(x.v)))) return false;
      for (let off = 0; off < SIZE; off += MiB) if (!(await check(x, off, MiB, `${what}, 1 MiB`, bad.get(x.v)))) return false;
      for (let i = 0; i < 12 * ROUNDS; i++) {
        const len = 1 + Math.floor(r() * 1.5 * MiB);
        if (!(await check(x, Math.floor(r() * SIZE), len, `${what}, random`, bad.get(x.v)))) return false;
      }
      // several at once: batches of different requests in flight together
      const all = await Promise.all(Array.from({ length: 4 }, (_, k) => check(x, (k * 3 * MiB) / 4 + k * 1000, MiB, `${what}, concurrent`, bad.get(x.v))));
      if (all.includes(false)) return false;
    }
    return true;
  };
  if (!(await pass('sound'))) return;
  t.true(slotReaderStats.runs > readsBefore, `the slot readers read runs (${slotReaderStats.runs - readsBefore})`);

  // flip a data byte in a few backend slots that clusters of /d or /c point at (an inherited one among them)
  const parentId = d.v.info().id;
  const targets: Array<{ file: string; slot: number }> = [];
  const bad = new Map<VDisk, Set<number>>(disks.map((x) => [x.v, new Set<number>()]));
  const picked = new Set<string>();
  for (let tries = 0; targets.length < 6 && tries < 10_000; tries++) {
    const x = disks[tries % 2];
    const a = Math.floor(r() * clusters);
    const w = whereIs(x.v, a);
    if (w === null || impl(x.v).source(w.depth).localScoFd(w.sco) !== null) continue; // in the write cache: not flipped here
    const ns = w.depth === 0 ? x.v.info().id : parentId;
    const name = `${ns}/${w.sco}/${w.slot}`;
    if (picked.has(name)) continue;
    picked.add(name);
    const key = impl(x.v).source(w.depth).scoKeyOf(w.sco);
    targets.push({ file: path.join(env.backendDir, key), slot: w.slot });
    // every cluster of either vDisk stored in that slot is damaged now
    for (const y of disks) {
      for (let b = 0; b < clusters; b++) {
        const u = whereIs(y.v, b);
        if (u === null || u.sco !== w.sco || u.slot !== w.slot) continue;
        const uns = u.depth === 0 ? y.v.info().id : parentId;
        if (uns === ns) bad.get(y.v)!.add(b);
      }
    }
  }
  t.true(targets.length >= 3, `slots to damage were found (${targets.length})`);
  for (const x of targets) flipByte(x.file, x.slot * SLOT_SIZE + HEADER + 100 + Math.floor(r() * 3000));
  emptyReadCache(pool);
  if (!(await pass('damaged', bad))) return;
  t.true(lines.some((l) => l.level === 'error' && l.message === 'checksum error reading from the backend'), 'the damage is logged');
  t.log(`damaged clusters: /d ${[...bad.get(d.v)!].join(' ')}; /c ${[...bad.get(c.v)!].join(' ')}; slot reader runs ${slotReaderStats.runs - readsBefore}`);
}

test('large reads shared between the slot readers and the main thread put every cluster in its place; flipped bytes are CHECKSUM (read cache)', (t) => parallelReads(t, false));

test('the same with the file backend read in place', (t) => parallelReads(t, true));
