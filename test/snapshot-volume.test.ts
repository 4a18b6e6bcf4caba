/**
 * Snapshots, rollback, clones and templates at the volume layer (no mount): every check reads the bytes
 * back, and the snapshot list, clones and data must come back after a local restart and after a rebuild
 * from the backend alone (state directory removed).
 */
import test from 'ava';
import fs from 'node:fs';
import { codeOf, pattern, poolEnv } from './helpers/vpool.js';
import type { VPool } from '../volume/types.js';
import { openBlobStore } from '../volume/backend/index.js';
import type { SnapshotManager } from '../volume/snapshots/snapshots.js';
import { addGarbage, emptyDoc } from '../volume/lineage/snapshot-store.js';
import { gatedStore } from './helpers/gated-store.js';

const MiB = 2 ** 20;

async function rebuild(env: ReturnType<typeof poolEnv>, pool: VPool): Promise<VPool> {
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  return env.open();
}

async function restart(env: ReturnType<typeof poolEnv>, pool: VPool): Promise<VPool> {
  await env.close(pool);
  return env.open();
}

test('snapshot, overwrite, rollback: bytes and size as of the snapshot, later snapshots dropped', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 2 * MiB);
  const v = pool.vdisk('/d');
  const a = pattern(1, 300_000);
  await v.write(5000, a);
  await pool.snapshots.create('/d', 's1');
  await v.write(0, pattern(2, 1_000_000));
  await v.resize(3 * MiB + 17);
  await pool.snapshots.create('/d', 's2');
  await v.write(MiB, pattern(3, 70_000));
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s1', 's2']);

  await pool.snapshots.rollback('/d', 's1');
  t.is(v.size, 2 * MiB);
  const want = Buffer.alloc(2 * MiB);
  a.copy(want, 5000);
  t.true((await v.read(0, 2 * MiB)).equals(want), 'data as of s1');
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s1']);

  // writes after the rollback, then both restarts
  await v.write(100, pattern(4, 5000));
  pattern(4, 5000).copy(want, 100);
  pool = await restart(env, pool);
  t.true((await pool.vdisk('/d').read(0, 2 * MiB)).equals(want), 'after a local restart');
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s1']);
  pool = await rebuild(env, pool);
  t.is(pool.vdisk('/d').size, 2 * MiB);
  t.true((await pool.vdisk('/d').read(0, 2 * MiB)).equals(want), 'after a rebuild from the backend: the dropped TLogs stay dropped');
  t.deepEqual(pool.snapshots.list('/d').map((s) => [s.name, s.inBackend]), [['s1', true]]);
  await pool.snapshots.rollback('/d', 's1');
  t.true((await pool.vdisk('/d').read(0, 2 * MiB)).equals(Buffer.concat([Buffer.alloc(5000), a, Buffer.alloc(2 * MiB - 5000 - a.length)])));
});

test('several snapshots, delete the middle one: the others roll back right, across restarts', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, MiB);
  const states: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    await pool.vdisk('/d').write(i * 40_000, pattern(10 + i, 100_000));
    states.push(await pool.vdisk('/d').read(0, MiB));
    await pool.snapshots.create('/d', `s${i}`, { sticky: i === 3 });
  }
  await pool.snapshots.remove('/d', 's1');
  await pool.snapshots.setSticky('/d', 's0', true);
  await pool.snapshots.setSticky('/d', 's3', false);
  pool = await rebuild(env, pool);
  t.deepEqual(pool.snapshots.list('/d').map((s) => [s.name, s.sticky]), [['s0', true], ['s2', false], ['s3', false]]);
  for (const i of [3, 2, 0]) {
    await pool.snapshots.rollback('/d', `s${i}`);
    t.true((await pool.vdisk('/d').read(0, MiB)).equals(states[i]), `s${i}`);
    pool = await restart(env, pool);
    t.true((await pool.vdisk('/d').read(0, MiB)).equals(states[i]), `s${i} after a restart`);
  }
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s0']);
});

test('bad names, duplicates and unknown snapshots are refused and change nothing', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, MiB);
  await pool.snapshots.create('/d', 'ok');
  for (const bad of ['', 'a/b', 'a:b', 'a\0b', 'x'.repeat(256), 'é'.repeat(128)]) {
    t.is(await codeOf(t, pool.snapshots.create('/d', bad), `create ${JSON.stringify(bad)}`), 'INVALID');
  }
  t.truthy(await pool.snapshots.create('/d', 'é'.repeat(127) + 'x'), '255 bytes is fine');
  t.is(await codeOf(t, pool.snapshots.create('/d', 'ok'), 'duplicate'), 'EXISTS');
  t.is(await codeOf(t, pool.snapshots.remove('/d', 'nope'), 'delete unknown'), 'NOT_FOUND');
  t.is(await codeOf(t, pool.snapshots.rollback('/d', 'nope'), 'rollback unknown'), 'NOT_FOUND');
  t.is(await codeOf(t, pool.snapshots.setSticky('/d', 'nope', true), 'sticky unknown'), 'NOT_FOUND');
  t.is(await codeOf(t, pool.snapshots.clone('/d', 'nope', '/c'), 'clone unknown'), 'NOT_FOUND');
  t.is(pool.snapshots.list('/d').length, 2);
  t.deepEqual(pool.readdir('/'), ['d']);
});

test('a clone reads its parent as of the snapshot, both diverge, and it survives restarts', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.mkdir('/dir', 0o755, 0, 0);
  await pool.createFile('/p', 0o644, 0, 0, MiB);
  const base = pattern(20, MiB);
  await pool.vdisk('/p').write(0, base);
  await pool.snapshots.create('/p', 'gold');
  await pool.vdisk('/p').write(0, pattern(21, 10_000)); // after the snapshot: not in the clone
  await pool.snapshots.clone('/p', 'gold', '/dir/c');
  const c = pool.vdisk('/dir/c');
  t.is(c.size, MiB);
  t.true((await c.read(0, MiB)).equals(base));
  await c.write(50_000, pattern(22, 9000));
  const cWant = Buffer.from(base);
  pattern(22, 9000).copy(cWant, 50_000);
  const pWant = Buffer.from(base);
  pattern(21, 10_000).copy(pWant, 0);
  t.true((await c.read(0, MiB)).equals(cWant));
  t.true((await pool.vdisk('/p').read(0, MiB)).equals(pWant));
  t.deepEqual(pool.vdisk('/dir/c').info().parent, { path: 'p', snapshot: 'gold' });
  t.deepEqual(pool.vdisk('/p').info().clones, ['dir/c']);
  t.deepEqual(pool.snapshots.list('/p')[0].clones, ['dir/c']);

  t.is(await codeOf(t, pool.unlink('/p'), 'unlink a parent'), 'BUSY');
  t.is(await codeOf(t, pool.snapshots.remove('/p', 'gold'), 'delete a cloned snapshot'), 'BUSY');
  t.is(await codeOf(t, pool.snapshots.clone('/p', 'gold', '/dir/c'), 'clone onto an existing path'), 'EXISTS');
  await pool.rename('/p', '/dir/parent');
  t.deepEqual(pool.vdisk('/dir/c').info().parent, { path: 'dir/parent', snapshot: 'gold' });

  pool = await restart(env, pool);
  t.true((await pool.vdisk('/dir/c').read(0, MiB)).equals(cWant), 'clone after a local restart');
  pool = await rebuild(env, pool);
  t.true((await pool.vdisk('/dir/c').read(0, MiB)).equals(cWant), 'clone after a rebuild from the backend');
  t.true((await pool.vdisk('/dir/parent').read(0, MiB)).equals(pWant), 'parent after a rebuild');
  t.deepEqual(pool.vdisk('/dir/parent').info().clones, ['dir/c']);

  // ':PATH' snapshots now; the clone of a clone reads two namespaces
  await pool.snapshots.clone('/dir/c', '', '/cc');
  t.true((await pool.vdisk('/cc').read(0, MiB)).equals(cWant));
  t.is(pool.snapshots.list('/dir/c').length, 1);
  await pool.unlink('/cc');
  await pool.unlink('/dir/c');
  await pool.unlink('/dir/parent');
  t.deepEqual(pool.readdir('/dir'), []);
});

test('a clone chain to depth 255 works; 256 is INVALID', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/c0', 0o644, 0, 0, 64 * 1024);
  await pool.vdisk('/c0').write(0, pattern(30, 4096));
  for (let d = 1; d <= 255; d++) {
    await pool.vdisk(`/c${d - 1}`).write(d * 100, Buffer.from([d & 0xff]));
    await pool.snapshots.clone(`/c${d - 1}`, '', `/c${d}`);
  }
  const want = pattern(30, 4096);
  for (let d = 1; d <= 255; d++) want[d * 100] = d & 0xff;
  t.true((await pool.vdisk('/c255').read(0, 4096)).equals(want), 'the deepest clone reads every ancestor');
  t.is(await codeOf(t, pool.snapshots.clone('/c255', '', '/c256'), 'depth 256'), 'INVALID');
  t.throws(() => pool.stat('/c256'));
});

test('a template is read-only, keeps one snapshot, and clones of it diverge', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/img', 0o644, 0, 0, MiB);
  await pool.vdisk('/img').write(0, pattern(40, 200_000));
  await pool.snapshots.create('/img', 'a');
  await pool.vdisk('/img').write(0, pattern(41, 100_000));
  await pool.snapshots.makeTemplate('/img');
  const img = await pool.vdisk('/img').read(0, MiB);
  t.is(pool.snapshots.list('/img').length, 1);
  t.true(pool.vdisk('/img').info().template);
  t.is(await codeOf(t, pool.vdisk('/img').write(0, Buffer.alloc(10)), 'write'), 'READ_ONLY');
  t.is(await codeOf(t, pool.vdisk('/img').resize(10), 'resize'), 'READ_ONLY');
  for (let i = 0; i < 3; i++) {
    await pool.snapshots.clone('/img', '', `/vm${i}`);
    await pool.vdisk(`/vm${i}`).write(i * 4096, pattern(50 + i, 4096));
  }
  pool = await restart(env, pool);
  t.true(pool.vdisk('/img').info().template, 'template after a local restart');
  t.is(await codeOf(t, pool.vdisk('/img').write(0, Buffer.alloc(10)), 'write after a local restart'), 'READ_ONLY');
  pool = await rebuild(env, pool);
  t.true(pool.vdisk('/img').info().template, 'template after a rebuild');
  t.is(await codeOf(t, pool.vdisk('/img').write(0, Buffer.alloc(10)), 'write after rebuild'), 'READ_ONLY');
  for (let i = 0; i < 3; i++) {
    const want = Buffer.from(img);
    pattern(50 + i, 4096).copy(want, i * 4096);
    t.true((await pool.vdisk(`/vm${i}`).read(0, MiB)).equals(want), `vm${i}`);
  }
});

test('with the backend away, rollback and clone fail with BACKEND after the wait and change nothing', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  (pool.snapshots as SnapshotManager).backendWaitMs = 2000; // the second rollback must finish within it once the backend is back: an fdatasync per TLog upload, on a loaded machine
  await pool.createFile('/d', 0o644, 0, 0, MiB);
  await pool.vdisk('/d').write(0, pattern(60, 100_000));
  await pool.snapshots.create('/d', 's1');
  await pool.syncToBackend();
  await pool.vdisk('/d').write(0, pattern(61, 100_000));
  const now = await pool.vdisk('/d').read(0, MiB);
  gated.pause(); // every put waits: the uploads cannot finish
  t.is(await codeOf(t, pool.snapshots.rollback('/d', 's1'), 'rollback'), 'BACKEND');
  t.true((await pool.vdisk('/d').read(0, MiB)).equals(now), 'the data did not change');
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s1']);
  t.is(await codeOf(t, pool.snapshots.clone('/d', 's1', '/c'), 'clone'), 'BACKEND');
  t.deepEqual(pool.readdir('/'), ['d'], 'no clone was made');
  gated.resume();
  await pool.snapshots.rollback('/d', 's1');
  const want = Buffer.alloc(MiB);
  pattern(60, 100_000).copy(want);
  t.true((await pool.vdisk('/d').read(0, MiB)).equals(want));
  await pool.snapshots.clone('/d', 's1', '/c');
  t.true((await pool.vdisk('/c').read(0, MiB)).equals(want));
});

test('garbage ranges for the scrubber are merged when they overlap or touch', (t) => {
  const doc = emptyDoc();
  addGarbage(doc, { fromTlog: 5, toTlog: 7, reason: 'snapshots deleted' });
  addGarbage(doc, { fromTlog: 12, toTlog: 14, reason: 'snapshots deleted' });
  addGarbage(doc, { fromTlog: 8, toTlog: 9, reason: 'snapshots deleted' });
  addGarbage(doc, { fromTlog: 3, toTlog: 2, reason: 'empty' });
  t.deepEqual(doc.garbage.map((g) => [g.fromTlog, g.toTlog]), [[5, 9], [12, 14]]);
  addGarbage(doc, { fromTlog: 1, toTlog: 20, reason: 'rolled back' });
  t.deepEqual(doc.garbage, [{ fromTlog: 1, toTlog: 20, reason: 'snapshots deleted; rolled back' }]);
});

test('a snapshot being cloned cannot be deleted or rolled over until the clone is made', async (t) => {
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  await pool.createFile('/d', 0o644, 0, 0, MiB);
  await pool.snapshots.create('/d', 's0');
  await pool.vdisk('/d').write(0, pattern(70, 50_000));
  await pool.snapshots.create('/d', 's1');
  gated.pause(); // the clone waits for s1's upload
  const cloning = pool.snapshots.clone('/d', 's1', '/c');
  while (gated.waiting === 0) await new Promise((r) => setTimeout(r, 10));
  t.is(await codeOf(t, pool.snapshots.remove('/d', 's1'), 'delete while cloning'), 'BUSY');
  t.is(await codeOf(t, pool.snapshots.rollback('/d', 's0'), 'rollback over it while cloning'), 'BUSY');
  gated.resume();
  await cloning;
  const want = Buffer.alloc(MiB);
  pattern(70, 50_000).copy(want);
  t.true((await pool.vdisk('/c').read(0, MiB)).equals(want));
  t.is(await codeOf(t, pool.snapshots.remove('/d', 's1'), 'delete once cloned'), 'BUSY', 'now it has a clone');
  await pool.snapshots.remove('/d', 's0');
});
