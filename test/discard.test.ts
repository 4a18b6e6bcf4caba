/**
 * VDisk.discard, deterministic cases (the seeded ones are in volume-model.test.ts and the crash tests):
 * argument checks; the ordering rule of the DISCARD record (the open SCO is closed first only when it holds
 * a discarded cluster: tlog-format.ts), and that a TRIM of never-written space records nothing; a discard
 * in a clone hides the parent's data without touching the parent; a snapshot taken before a discard keeps
 * the old data (rollback, clone). Each after a local restart and a rebuild from the backend.
 */
import test from 'ava';
import fs from 'node:fs';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { CS, codeOf, pattern, poolEnv } from './helpers/vpool.js';

const impl = (pool: VPool, p: string) => pool.vdisk(p) as VDiskImpl;

test('argument checks: a range past the size, a negative or fractional number are INVALID; a template is READ_ONLY', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  await v.write(0, pattern(1, 4 * CS));
  t.is(await codeOf(t, v.discard(0, 4 * CS + 1), 'past the size'), 'INVALID');
  t.is(await codeOf(t, v.discard(-1, 10), 'negative offset'), 'INVALID');
  t.is(await codeOf(t, v.discard(0, 1.5), 'fractional length'), 'INVALID');
  t.is(await codeOf(t, v.discard(2 ** 47, 1), 'past the maximum size'), 'TOO_BIG');
  await v.discard(CS, 0); // nothing
  t.deepEqual(await v.read(0, 4 * CS), pattern(1, 4 * CS), 'the failed and empty discards changed nothing');
  await pool.snapshots.makeTemplate('/d');
  t.is(await codeOf(t, v.discard(0, CS), 'a template'), 'READ_ONLY');
});

test('the open SCO is closed before a DISCARD record only when it holds a discarded cluster; a TRIM of unwritten space records nothing', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 64 * CS);
  const v = impl(pool, '/d');
  const a = pattern(1, 2 * CS);
  await v.write(0, a); // clusters 0, 1 in the open SCO
  const s = v.cache.openScoNumber;
  await v.discard(CS, CS); // cluster 1 is in the open SCO: it closes first
  t.is(v.cache.openScoNumber, 0, 'the open SCO was closed');
  t.is(v.scoCounts.get(s), 2);
  const b = pattern(2, 2 * CS);
  await v.write(10 * CS, b); // clusters 10, 11 in a new open SCO
  const s2 = v.cache.openScoNumber;
  await v.discard(0, CS); // cluster 0 is not in the open SCO: it stays open
  t.is(v.cache.openScoNumber, s2, 'the open SCO stays open');
  t.is(v.cache.openScoBytes, 2 * (CS + 32));
  const journal = v.cache.readOpenTlog().length;
  await v.discard(20 * CS, 40 * CS); // never written: nothing to record
  t.is(v.cache.readOpenTlog().length, journal, 'a discard of unwritten clusters appends no record');
  t.is(v.allocatedBytes, 2 * CS);
  const want = Buffer.alloc(64 * CS);
  b.copy(want, 10 * CS);
  t.deepEqual(await v.read(0, 64 * CS), want);
  await env.close(pool);
  pool = await env.open();
  t.deepEqual(await pool.vdisk('/d').read(0, 64 * CS), want, 'after a local restart');
  t.is(pool.vdisk('/d').allocatedBytes, 2 * CS);
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  t.deepEqual(await pool.vdisk('/d').read(0, 64 * CS), want, 'after a rebuild from the backend');
  t.is(pool.vdisk('/d').seek(0, 'data'), 10 * CS, 'SEEK_DATA skips the discarded clusters');
});

test('a discard in a clone hides its parent\'s data there, the parent keeps it; a snapshot before a discard keeps the old data', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/p', 0o644, 0, 0, 0);
  const data = pattern(1, 16 * CS);
  await pool.vdisk('/p').write(0, data);
  await pool.snapshots.create('/p', 'before');
  await pool.snapshots.clone('/p', 'before', '/c');
  await pool.vdisk('/c').discard(2 * CS + 10, 6 * CS); // clusters 3..7 freed, 2 and 8 zeroed in part
  await pool.vdisk('/p').discard(8 * CS, 8 * CS); // after the snapshot
  const clone = Buffer.from(data);
  clone.fill(0, 2 * CS + 10, 8 * CS + 10);
  const parent = Buffer.from(data);
  parent.fill(0, 8 * CS);
  const check = async (where: string) => {
    t.deepEqual(await pool.vdisk('/c').read(0, 16 * CS), clone, `${where}: the clone reads zeros where it discarded`);
    // own: the two edge clusters the discard rewrote; inherited: the parent's 16 less the 5 freed and those 2
    t.is(pool.vdisk('/c').allocatedBytes, 2 * CS, `${where}: the clone's own allocation`);
    t.is(pool.vdisk('/c').info().inheritedBytes, 9 * CS, `${where}: the clone's inherited clusters`);
    t.deepEqual(await pool.vdisk('/p').read(0, 16 * CS), parent, `${where}: the parent`);
  };
  await check('at once');
  await env.close(pool);
  pool = await env.open();
  await check('after a local restart');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  await check('after a rebuild from the backend');
  // the snapshot taken before the parent's discard still has the data: a clone of it, then a rollback to it
  await pool.snapshots.clone('/p', 'before', '/c2');
  t.deepEqual(await pool.vdisk('/c2').read(0, 16 * CS), data, 'a clone of the snapshot before the discard');
  await pool.snapshots.create('/c', 'mine');
  await pool.snapshots.rollback('/c', 'mine');
  t.deepEqual(await pool.vdisk('/c').read(0, 16 * CS), clone, 'a rollback of the clone keeps its discard');
  await pool.snapshots.rollback('/p', 'before');
  t.deepEqual(await pool.vdisk('/p').read(0, 16 * CS), data, 'a rollback to the snapshot before the discard brings the data back');
  await pool.vdisk('/c2').discard(0, 16 * CS);
  t.is(pool.vdisk('/c2').allocatedBytes, 0, 'a whole-disk TRIM of a clone frees everything');
  t.deepEqual(await pool.vdisk('/c2').read(0, 16 * CS), Buffer.alloc(16 * CS));
});
