/**
 * Regression (scrub-model seed 479800218): a scrub job on another backend handle (another host) must find
 * the clones of the vDisk it scrubs in the backend's tree, which a claimed vPool ships per claim epoch
 * (`pool/tree/<epoch>.json`), and keep the SCOs their bases name. It used to read only `pool/tree.json`
 * (written by builds without claims), found no clone, rewrote a SCO the clone's base names out of the
 * parent's chain, and after a rebuild the parent no longer knew that SCO: the clone's reads failed
 * ("SCO unknown to this vDisk"). Deterministic: fixed writes, one remote scrub, its apply, a rebuild.
 * Also: a tree listed but deleted before it is read (the shipper drops older epochs' trees once a newer
 * one is in; scrub-model seeds 443322178, 489592035) is skipped, or listed again when it was the newest.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import { openBlobStore } from '../volume/backend/index.js';
import { scrubVDisk } from '../volume/scrub/scrub-job.js';
import { pinCandidates, treeVDisks } from '../volume/scrub/tree-vdisks.js';
import type { BlobStore } from '../volume/backend/types.js';

test('remote scrub: the clones of a claimed vPool pin their base SCOs; the clone reads the same after the apply and a rebuild', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const size = 32 * CS;
  await pool.createFile('/a', 0o644, 0, 0, size);
  const a = pool.vdisk('/a');
  await a.write(0, pattern(1, 8 * CS)); // one SCO of 8 slots
  await a.write(0, pattern(2, 4 * CS)); // half of it overwritten: under the fill ratio at the snapshot
  await pool.snapshots.create('/a', 's');
  await pool.snapshots.clone('/a', 's', '/c');
  const cloneWant = await pool.vdisk('/c').read(0, size);
  await a.write(0, pattern(3, 8 * CS)); // the parent moves on: the SCO is dead at its head
  const headWant = await a.read(0, size);
  await pool.syncToBackend(); // the vDisks and the tree (it names the clone)
  const aId = a.info().id;
  const cId = pool.vdisk('/c').info().id;

  const other = await openBlobStore(env.backendUrl);
  let pinned: number;
  try {
    t.true((await pinCandidates(other)).includes(cId), 'the backend tree of the claimed vPool names the clone');
    const result = await scrubVDisk(other, aId, { scratchDir: path.join(env.root, 'scratch'), scoClusters: 8 });
    pinned = result.stats.scosPinned;
  } finally {
    await other.close();
  }
  t.true(pinned > 0, 'the remote job keeps the SCO the clone base names');
  t.not(await pool.scrub.applyPending('/a'), null, 'the owner applies the remote result');
  t.true((await pool.vdisk('/c').read(0, size)).equals(cloneWant), 'the clone reads the same after the apply');

  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  t.true((await pool.vdisk('/a').read(0, size)).equals(headWant), 'the parent after a rebuild');
  t.true((await pool.vdisk('/c').read(0, size)).equals(cloneWant), 'the clone after a rebuild');
});

test('pin candidates: a tree that vanishes between list and get is skipped, the newest one is listed again', async (t) => {
  const env = poolEnv(t);
  const real = await openBlobStore(env.backendUrl);
  t.teardown(() => real.close());
  const tree = (ids: string[]): Buffer => Buffer.from(JSON.stringify({ nodes: ids.map((vdiskId) => ({ vdiskId })) }));
  await real.put('pool/tree/0000000000000003.json', tree(['x', 'y']));
  let lists = 0;
  // the first listing names an older tree and a newer one that are both gone by the time they are read
  const racing = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'list') {
        return async (prefix: string): Promise<string[]> => {
          const keys = await target.list(prefix);
          return prefix === 'pool/tree/' && lists++ === 0 ? ['pool/tree/0000000000000001.json', ...keys, 'pool/tree/0000000000000009.json'] : keys;
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as BlobStore;
  t.deepEqual((await pinCandidates(racing)).sort(), ['x', 'y']);
  t.is(lists, 2, 'listed again once the newest listed tree was gone');
  lists = 0;
  t.deepEqual((await treeVDisks(racing)).sort(), ['x', 'y']);
});

test('remote scrub: a clone made after the job ran makes its result stale; the clone reads the same after a rebuild', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const size = 32 * CS;
  await pool.createFile('/a', 0o644, 0, 0, size);
  const a = pool.vdisk('/a');
  await a.write(0, pattern(1, 8 * CS));
  await a.write(0, pattern(2, 4 * CS)); // the first SCO is half dead at the snapshot: the job rewrites it
  await pool.snapshots.create('/a', 's');
  await a.write(0, pattern(3, 8 * CS));
  await pool.syncToBackend();
  const other = await openBlobStore(env.backendUrl);
  const result = await scrubVDisk(other, a.info().id, { scratchDir: path.join(env.root, 'scratch'), scoClusters: 8 }).finally(() => other.close());
  t.true((result.unnamed ?? []).length > 0, 'the job rewrote a SCO');
  await pool.snapshots.clone('/a', 's', '/c'); // its base names the rewritten SCO
  const cloneWant = await pool.vdisk('/c').read(0, size);
  const got = await pool.scrub.applyPending('/a').then(() => 'applied', (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
  t.regex(got, /^BUSY: .*stale.*a clone the scrub did not see/, 'the owner refuses the result');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  t.true((await pool.vdisk('/c').read(0, size)).equals(cloneWant), 'the clone after a rebuild');
});
