/**
 * Model-based test of the volume layer: thousands of seeded random writes, reads, discards and resizes (unaligned,
 * across cluster and SCO boundaries, beyond 4 GiB) on two vDisks and the clones made of them, with
 * snapshots, snapshot deletes, rollbacks and clones in the mix, against RefDisk / RefSnapshots, with local
 * restarts (close and reopen on the same state) and backend restarts (state directory removed) in between.
 * Every read is compared byte for byte, and after each restart every written cluster, the allocation and
 * each vDisk's snapshot list.
 * The seed is printed; VPOOLFS_SEED=<n> replays a run.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import { pattern, RefDisk, RefSnapshots } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const GiB = 2 ** 30;
const CS = 4096;
const SCO_CLUSTERS = 8;

async function compareAll(t: import('ava').ExecutionContext, pool: VPool, refs: Map<string, RefDisk>, where: string, snaps?: RefSnapshots): Promise<void> {
  for (const [p, ref] of refs) {
    const v = pool.vdisk(p);
    if (snaps) t.deepEqual(pool.snapshots.list(p).map((s) => s.name), snaps.list(p).map((s) => s.name), `${where}: snapshots of ${p}`);
    t.is(v.size, ref.size, `${where}: size of ${p}`);
    t.is(v.allocatedBytes, ref.allocatedBytes, `${where}: allocated (own) bytes of ${p}`);
    t.is(v.info().inheritedBytes, ref.inheritedBytes, `${where}: inherited bytes of ${p}`);
    for (const a of ref.clusters.keys()) {
      const off = a * CS;
      if (off >= ref.size) continue;
      const got = await v.read(off, CS);
      if (!got.equals(ref.read(off, CS))) {
        t.fail(`${where}: ${p} cluster ${a} (offset ${off}) differs`);
        return;
      }
    }
  }
}

function pickOffset(r: () => number, size: number): number {
  const k = r();
  if (k < 0.3) return Math.floor(r() * 64 * CS); // near the start: overlaps and SCO boundaries
  if (k < 0.5) return Math.max(0, Math.floor(r() * 40) * SCO_CLUSTERS * CS + Math.floor(r() * 2 * CS) - CS); // around SCO edges
  if (k < 0.75) return 4 * GiB - 3 * CS + Math.floor(r() * 6 * CS); // across 4 GiB
  if (k < 0.9) return Math.floor(r() * Math.max(1, size));
  return 5 * GiB + Math.floor(r() * GiB);
}

test('random writes, reads, discards and resizes match the reference across local and backend restarts', async (t) => {
  const { seed, rand: r } = seeded(t);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-model-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const state = path.join(root, 'state');
  const opts = { name: 'model', stateDir: state, backendUrl: `file://${path.join(root, 'backend')}`, scoClusters: SCO_CLUSTERS, tlogScos: 3, scoMaxAgeMs: 50 };
  let pool = await openVPool(opts);
  const refs = new Map<string, RefDisk>([['/a', new RefDisk()], ['/dir/b', new RefDisk()]]);
  const snaps = new RefSnapshots();
  const counts = { snapshots: 0, deletes: 0, rollbacks: 0, clones: 0, busy: 0, discards: 0 };
  await pool.mkdir('/dir', 0o755, 0, 0);
  for (const p of refs.keys()) await pool.createFile(p, 0o644, 0, 0, 0);
  const ops = Number(process.env.VPOOLFS_MODEL_OPS ?? 3000);
  let restarts = 0;
  let rebuilds = 0;
  /** One snapshot operation on `p`: take, delete, roll back or clone, checked against the model. */
  async function snapshotOp(i: number, p: string, ref: RefDisk): Promise<void> {
    const list = snaps.list(p);
    const k = r();
    if (k < 0.4 || list.length === 0) {
      await pool.snapshots.create(p, `s${i}`);
      snaps.take(p, `s${i}`, ref);
      counts.snapshots++;
    } else if (k < 0.6) {
      const s = list[Math.floor(r() * list.length)];
      const want = snaps.remove(p, s.name);
      const got = await pool.snapshots.remove(p, s.name).then(() => 'OK', (e: { code?: string }) => e.code);
      if (got !== want) t.fail(`seed ${seed} op ${i}: delete ${s.name} of ${p}: ${got}, the model says ${want}`);
      counts[want === 'OK' ? 'deletes' : 'busy']++;
    } else if (k < 0.85) {
      const s = list[Math.floor(r() * list.length)];
      const want = snaps.rollback(p, s.name);
      const got = await pool.snapshots.rollback(p, s.name).then(() => 'OK', (e: { code?: string }) => e.code);
      if (want === 'BUSY') {
        if (got !== 'BUSY') t.fail(`seed ${seed} op ${i}: rollback of ${p} over a cloned snapshot: ${got}`);
        counts.busy++;
        return;
      }
      if (got !== 'OK') t.fail(`seed ${seed} op ${i}: rollback of ${p} to ${s.name}: ${got}`);
      refs.set(p, want);
      counts.rollbacks++;
      await compareAll(t, pool, new Map([[p, want]]), `seed ${seed} op ${i} after rollback of ${p} to ${s.name}`);
    } else if (refs.size < 7) {
      const s = list[Math.floor(r() * list.length)];
      const target = `/dir/clone${i}`;
      await pool.snapshots.clone(p, s.name, target);
      s.clones++;
      refs.set(target, s.ref.cloneChild());
      counts.clones++;
      await compareAll(t, pool, new Map([[target, refs.get(target)!]]), `seed ${seed} op ${i} after clone of ${p} at ${s.name}`);
    }
  }

  try {
    for (let i = 0; i < ops; i++) {
      const paths = [...refs.keys()];
      const p = r() < 0.5 ? '/a' : paths.length > 2 && r() < 0.5 ? paths[2 + Math.floor(r() * (paths.length - 2))] : '/dir/b';
      const ref = refs.get(p)!;
      const v = pool.vdisk(p);
      const k = r();
      if (k < 0.5) {
        const off = pickOffset(r, ref.size);
        const len = r() < 0.3 ? 1 + Math.floor(r() * 100) : r() < 0.5 ? CS * (1 + Math.floor(r() * 12)) : 1 + Math.floor(r() * 40000);
        const data = pattern(seed, i, len);
        await v.write(off, data);
        ref.write(off, data);
      } else if (k < 0.55) {
        // a discard (TRIM, PUNCH_HOLE, ZERO_RANGE): any alignment, within the size; now and then one past it
        if (ref.size === 0) continue;
        const off = r() < 0.7 ? Math.min(pickOffset(r, ref.size), ref.size - 1) : Math.floor(r() * ref.size);
        const room = ref.size - off;
        const len = Math.min(room, r() < 0.3 ? 1 + Math.floor(r() * 2 * CS) : r() < 0.6 ? CS * (1 + Math.floor(r() * 24)) : r() < 0.9 ? 1 + Math.floor(r() * 200000) : room);
        if (r() < 0.05) {
          const got = await v.discard(off, room + 1 + Math.floor(r() * CS)).then(() => 'OK', (e: { code?: string }) => e.code);
          if (got !== 'INVALID') t.fail(`seed ${seed} op ${i}: a discard past the size of ${p}: ${got}, want INVALID`);
          continue;
        }
        await v.discard(off, len);
        ref.discard(off, len);
        counts.discards++;
      } else if (k < 0.59) {
        await snapshotOp(i, p, ref);
      } else if (k < 0.9) {
        const off = r() < 0.7 ? pickOffset(r, ref.size) : Math.floor(r() * (ref.size + 10));
        const len = Math.floor(r() * 50000);
        const got = await v.read(off, len);
        const want = ref.read(off, len);
        if (!got.equals(want)) {
          t.fail(`seed ${seed} op ${i}: read ${p} at ${off} len ${len} differs (got ${got.length} bytes, want ${want.length})`);
          return;
        }
      } else if (k < 0.96) {
        const size = r() < 0.5 ? Math.floor(r() * ref.size) : Math.floor(r() * 6 * GiB);
        await v.resize(size);
        ref.resize(size);
      } else if (k < 0.985) {
        await pool.close();
        pool = await openVPool(opts);
        restarts++;
        await compareAll(t, pool, refs, `seed ${seed} op ${i} after local restart`, snaps);
      } else {
        await pool.close();
        fs.rmSync(state, { recursive: true, force: true });
        pool = await openVPool(opts);
        rebuilds++;
        await compareAll(t, pool, refs, `seed ${seed} op ${i} after backend restart`, snaps);
      }
    }
    await compareAll(t, pool, refs, `seed ${seed} at the end`, snaps);
    t.log(`${ops} operations, ${restarts} local restarts, ${rebuilds} backend restarts; ${JSON.stringify(counts)}`);
    t.true(restarts > 0 && rebuilds > 0, 'the run exercised both kinds of restart');
    t.true(counts.snapshots > 0 && counts.rollbacks > 0 && counts.clones > 0, 'the run took snapshots, rolled back and cloned');
    t.true(counts.discards > 0, 'the run discarded');
  } finally {
    await pool.close();
  }
});
