/**
 * The orphan gc (issue 12; volume/scrub/orphans.ts): whole vDisk namespaces in the backend that nothing
 * references.
 * - A clone made just before a host loss whose tree change never shipped: the backend keeps the clone's
 *   objects, the tree another host rebuilds from does not name it. The gc's dry run lists that namespace with
 *   the reason (and nothing of the live vDisk, its snapshot or its other clone), the gc deletes it, the vPool
 *   reads the same, a second dry run is empty.
 * - The race: a clone being made while the gc runs (held after its base is in the backend, before its doc and
 *   tree node) is never listed nor deleted; it finishes and reads right.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import { openBlobStore } from '../volume/backend/index.js';
import { TREE_PREFIX } from '../volume/datapath/formats/backend-layout.js';
import { hookedStore } from './helpers/hooked-store.js';

const SIZE = 16 * CS;

test('orphan gc: the namespace of a clone whose tree change never shipped (host loss) is found with its reason and deleted; nothing live is', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  await pool.vdisk('/d').write(0, pattern(1, SIZE));
  await pool.snapshots.create('/d', 's');
  await pool.snapshots.clone('/d', 's', '/kept');
  await pool.vdisk('/d').write(0, pattern(2, 4 * CS));
  await pool.syncToBackend();
  // the tree as shipped before the lost clone
  const treeFiles = fs.readdirSync(path.join(env.backendDir, TREE_PREFIX));
  t.is(treeFiles.length, 1);
  const treeFile = path.join(env.backendDir, TREE_PREFIX, treeFiles[0]);
  const treeBefore = fs.readFileSync(treeFile);
  await pool.snapshots.clone('/d', 's', '/lost');
  const lostId = pool.vdisk('/lost').info().id;
  await pool.vdisk('/lost').write(0, pattern(3, 2 * CS));
  await pool.syncToBackend();
  const want = { d: await pool.vdisk('/d').read(0, SIZE), kept: await pool.vdisk('/kept').read(0, SIZE) };
  await env.close(pool);
  // the host is lost before the tree naming /lost shipped: the backend has the clone's objects and the old tree
  fs.writeFileSync(treeFile, treeBefore);
  fs.rmSync(env.state, { recursive: true, force: true });
  t.true(fs.readdirSync(path.join(env.backendDir, 'vdisks', lostId)).length > 0, 'the lost clone left objects');

  pool = await env.open(); // another host: rebuilt from the backend
  t.throws(() => pool.vdisk('/lost'), undefined, 'the rebuilt vPool knows nothing of the clone');
  const dry = await pool.scrub.orphans(true);
  t.deepEqual(dry.map((x) => x.key), [`vdisks/${lostId}/`], 'the dry run lists the lost clone alone');
  t.regex(dry[0].reason, /no tree, clone lineage or pending creation names \(\d+ objects, \d+ bytes\)/);
  t.true(fs.existsSync(path.join(env.backendDir, 'vdisks', lostId, 'base')), 'a dry run deletes nothing');
  t.deepEqual((await pool.scrub.orphans(false)).map((x) => x.key), [`vdisks/${lostId}/`]);
  const store = await openBlobStore(env.backendUrl);
  t.teardown(() => store.close());
  t.deepEqual(await store.list(`vdisks/${lostId}/`), [], 'its objects are gone');
  t.deepEqual(await pool.scrub.orphans(true), [], 'a second dry run finds nothing');
  t.true((await pool.vdisk('/d').read(0, SIZE)).equals(want.d), '/d reads the same');
  t.true((await pool.vdisk('/kept').read(0, SIZE)).equals(want.kept), 'its clone reads the same');
  await pool.snapshots.clone('/d', 's', '/again');
  t.true((await pool.vdisk('/again').read(0, SIZE)).equals(pattern(1, SIZE)), 'the snapshot still clones right');
  await env.close(pool);
});

test('orphan gc: a clone being made while the gc runs is never listed nor deleted', async (t) => {
  const env = poolEnv(t);
  const inner = await openBlobStore(env.backendUrl);
  let known = new Set<string>();
  let release: () => void = () => undefined;
  let heldKey = '';
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let reached: () => void = () => undefined;
  const atGate = new Promise<void>((resolve) => {
    reached = resolve;
  });
  // the first doc put of a vDisk not known yet (the clone's, after its base) waits for the test
  const store = hookedStore(inner, {
    exclusive: true,
    beforePut: async (key) => {
      const m = /^vdisks\/([^/]+)\/vdisk\.json$/.exec(key);
      if (m !== null && known.size > 0 && !known.has(m[1]) && heldKey === '') {
        heldKey = key;
        reached();
        await held;
      }
    },
  });
  const pool = await env.open({ backend: store });
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  await pool.vdisk('/d').write(0, pattern(1, SIZE));
  await pool.snapshots.create('/d', 's');
  await pool.syncToBackend();
  known = new Set([pool.vdisk('/d').info().id]);
  const cloning = pool.snapshots.clone('/d', 's', '/c');
  await atGate;
  const cloneId = /^vdisks\/([^/]+)\//.exec(heldKey)![1];
  t.true((await inner.list(`vdisks/${cloneId}/`)).length > 0, 'the clone has objects in the backend, and no tree node yet');
  t.deepEqual(await pool.scrub.orphans(true), [], 'the dry run does not list the clone being made');
  t.deepEqual(await pool.scrub.orphans(false), [], 'nor does the gc delete it');
  release();
  await cloning;
  t.true((await pool.vdisk('/c').read(0, SIZE)).equals(pattern(1, SIZE)), 'the clone reads right');
  await pool.syncToBackend();
  t.deepEqual(await pool.scrub.orphans(true), [], 'nothing is an orphan afterwards');
});
