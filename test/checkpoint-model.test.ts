/**
 * Model-based test of map checkpoints (volume/lineage/map-checkpoint.ts): seeded random writes, discards,
 * resizes, snapshots, snapshot deletes, rollbacks, clones, scrubs and local restarts on a vPool that writes a
 * checkpoint every 2 TLogs; at each "host loss" the state directory goes and the vPool is rebuilt from the
 * backend twice — without checkpoints (every TLog replayed) and with them — and both must read every vDisk
 * byte for byte as the reference, with the very same cluster map, slot counts and size, and every snapshot
 * (read from the backend through the chain) as the reference. The run must have rebuilt from a checkpoint
 * that a scrub, a rollback or a later write had not made stale, and have ignored stale ones.
 * Over a plain and an encrypted backend. VPOOLFS_SEED replays a run; VPOOLFS_CHECKPOINT_OPS sets its length.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { openBlobStore } from '../volume/backend/index.js';
import { EncryptedBlobStore } from '../volume/backend/encrypted-store.js';
import type { BlobStore } from '../volume/backend/types.js';
import { newestCheckpoint } from '../volume/lineage/checkpoint-job.js';
import { chainStart } from '../volume/lineage/chain-start.js';
import { vdiskFences } from '../volume/datapath/formats/epoch-fence.js';
import { backendDoc, chainItems } from '../volume/lineage/chain.js';
import { backendTlogs } from '../volume/datapath/formats/backend-layout.js';
import { checkpointPrefix } from '../volume/lineage/map-checkpoint.js';
import { logger } from '../util/log.js';
import { emptyDoc } from '../volume/lineage/snapshot-store.js';
import { RefDisk, RefSnapshots } from './helpers/ref-disk.js';
import { compareLive, compareSnapshots, CS, fail, ModelOps } from './helpers/model-ops.js';
import { seeded } from './helpers/seed.js';

const KEY = Buffer.alloc(32, 9);
const log = logger('checkpoint-model');

/** The map, slot counts and size of every vDisk: what a rebuild restored, for comparing two rebuilds. */
function fingerprint(pool: VPool, refs: Map<string, RefDisk>): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of refs.keys()) {
    const v = pool.vdisk(p) as VDiskImpl;
    const entries = [...v.map.entries()].map(([a, l]) => `${a}:${l.sco}.${l.slot}.${l.depth}`).join(',');
    const counts = [...v.scoCounts].sort((a, b) => a[0] - b[0]).join(';');
    out.set(p, `${v.size}|${v.corkedTlog}|${v.corkedSco}|${counts}|${entries}`);
  }
  return out;
}

for (const encrypted of [false, true]) {
  test(`rebuilds with and without map checkpoints read every vDisk and snapshot as the reference${encrypted ? ' (encrypted backend)' : ''}`, async (t) => {
    const { seed, rand: r } = seeded(t);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-ckpt-model-'));
    t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
    const state = path.join(root, 'state');
    const backendUrl = `file://${path.join(root, 'backend')}`;
    const handle = async (): Promise<BlobStore> => (encrypted ? new EncryptedBlobStore(await openBlobStore(backendUrl), KEY) : openBlobStore(backendUrl));
    // the rebuild without checkpoints writes none either: the one with them sees what the lost host left
    const openPool = async (loadCheckpoints = true): Promise<VPool> => openVPool({
      name: 'ckpt', stateDir: state, backend: await handle(), scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000, checkpointEveryTlogs: loadCheckpoints ? 2 : 0, loadCheckpoints,
    });
    let pool = await openPool();
    const refs = new Map<string, RefDisk>([['/a', new RefDisk()], ['/b', new RefDisk()]]);
    const snaps = new RefSnapshots();
    const counts = { writes: 0, discards: 0, snapshots: 0, deletes: 0, rollbacks: 0, clones: 0, scrubs: 0, restarts: 0, rebuilds: 0, fromCheckpoint: 0, staleIgnored: 0 };
    const op = new ModelOps(t, () => pool, refs, snaps, r, seed, counts);
    await op.create([...refs.keys()], 96 * CS);

    /** Whether a rebuild of `p` now would start from a checkpoint, and how many checkpoint objects it has. */
    const checkpointState = async (p: string): Promise<{ fits: boolean; objects: number }> => {
      const b = await handle();
      try {
        const id = pool.vdisk(p).info().id;
        const doc = (await backendDoc(b, id)) ?? emptyDoc();
        const objects = (await b.list(checkpointPrefix(id))).length;
        const items = await chainItems(b, id, doc, Infinity, await backendTlogs(b, id));
        const listed = await newestCheckpoint(b, id, doc, items, log);
        // the rebuild judges checkpoints from their own record and lists only after the one it takes
        // (volume/lineage/chain-start.ts): it must take the one the whole listing and hashing would, and
        // replay the same items after it
        const start = await chainStart(b, id, doc, await vdiskFences(b, id), { load: true, log });
        t.is(start.found?.key ?? null, listed?.key ?? null, `${p}: the rebuild's checkpoint is the one the whole chain says fits`);
        t.deepEqual(start.items.map((i) => i.key), items.slice(listed?.cp.header.items ?? 0).map((i) => i.key), `${p}: the items after it`);
        return { fits: listed !== null, objects };
      } finally {
        await b.close();
      }
    };

    /** The vDisks write no more checkpoints in this incarnation (as if the host died before they could). */
    const stopCheckpoints = (): void => {
      for (const p of refs.keys()) (pool.vdisk(p) as VDiskImpl).checkpoints.stop();
    };
    const hostLoss = async (where: string): Promise<boolean> => {
      // half the time the host is lost before its stop could write the last checkpoints: the newest one is
      // older than the chain's end
      if (r() < 0.5) stopCheckpoints();
      await pool.close();
      fs.rmSync(state, { recursive: true, force: true });
      pool = await openPool(false);
      if (!(await compareLive(t, pool, refs, `${where}, rebuilt without checkpoints`))) return false;
      const without = fingerprint(pool, refs);
      for (const p of refs.keys()) {
        const c = await checkpointState(p);
        if (c.fits) counts.fromCheckpoint++;
        else if (c.objects > 0) counts.staleIgnored++;
      }
      await pool.close();
      fs.rmSync(state, { recursive: true, force: true });
      pool = await openPool(true);
      if (!(await compareLive(t, pool, refs, `${where}, rebuilt with checkpoints`))) return false;
      const withCp = fingerprint(pool, refs);
      for (const [p, f] of without) if (withCp.get(p) !== f) return fail(t, `${where}: ${p}'s map, slot counts or size differ between the rebuilds with and without checkpoint`);
      for (const p of refs.keys()) if (!(await compareSnapshots(t, pool, p, snaps, `${where}, rebuilt with checkpoints`))) return false;
      counts.rebuilds++;
      return true;
    };

    try {
      const ops = Number(process.env.VPOOLFS_CHECKPOINT_OPS ?? (encrypted ? 200 : 350));
      const covered = (): boolean => counts.scrubs > 0 && counts.rollbacks > 0 && counts.clones > 0 && counts.rebuilds > 1 && counts.fromCheckpoint > 0;
      for (let i = 0; i < ops || (!covered() && i < 4 * ops); i++) {
        const paths = [...refs.keys()];
        const p = paths[Math.floor(r() * paths.length)];
        const ref = refs.get(p)!;
        const k = r();
        const where = `seed ${seed} op ${i}`;
        if (k < 0.5) {
          await op.write(p, i);
        } else if (k < 0.56) {
          await op.snapshot(p, i);
        } else if (k < 0.6 && snaps.list(p).length > 0) {
          if (!(await op.deleteSnapshot(p, where))) return;
        } else if (k < 0.65 && snaps.list(p).length > 0) {
          const done = await op.rollback(p, where);
          if (done === false) return;
          if (done === 'busy') continue;
        } else if (k < 0.67 && snaps.list(p).length > 0 && refs.size < 5) {
          await op.clone(p, i);
        } else if (k < 0.69) {
          await op.resize(p);
        } else if (k < 0.75) {
          await pool.scrub.scrub(p);
          counts.scrubs++;
        } else if (k < 0.79) {
          await pool.close();
          pool = await openPool();
          counts.restarts++;
          if (!(await compareLive(t, pool, refs, `${where} after a local restart`))) return;
        } else if (k < 0.82) {
          if (!(await hostLoss(`${where} after a host loss`))) return;
        } else if (k < 0.86) {
          // the chain changes under the checkpoints and the host is lost before a new one is written: a
          // scrub (segments replace TLogs) or a rollback (TLogs dropped), then more writes; the stale
          // checkpoint must be ignored (or an older one that still fits used)
          stopCheckpoints();
          const list = snaps.list(p);
          const s = list.length > 0 ? list[Math.floor(r() * list.length)] : undefined;
          const want = s !== undefined && r() < 0.5 ? snaps.rollback(p, s.name) : 'BUSY';
          if (want !== 'BUSY') {
            await pool.snapshots.rollback(p, s!.name);
            refs.set(p, want);
            counts.rollbacks++;
          } else {
            await pool.scrub.scrub(p);
            counts.scrubs++;
          }
          await op.write(p, i);
          await pool.vdisk(p).syncToBackend();
          if (!(await hostLoss(`${where} after a host loss right after a change of the chain`))) return;
        } else if (k < 0.9 && ref.size > 0) {
          await op.discard(p);
        } else {
          await op.write(p, i);
          if (r() < 0.5) await pool.vdisk(p).syncToBackend(); // more TLogs, so more checkpoints
        }
      }
      if (!(await hostLoss(`seed ${seed} at the end`))) return;
      t.log(JSON.stringify(counts));
      t.true(counts.fromCheckpoint > 0, 'some rebuild started from a checkpoint');
      t.true(counts.scrubs > 0 && counts.rollbacks > 0 && counts.clones > 0, 'the run scrubbed, rolled back and cloned');
      // old checkpoints are garbage-collected: at most the newest and the one it was made from, plus stale ones
      // the next checkpoint removes
      for (const p of refs.keys()) t.true((await checkpointState(p)).objects <= 3, `${p} keeps few checkpoints`);
      // and the sweep (vpoolfs gc) leaves them alone: gc --dry-run lists none
      for (const p of refs.keys()) {
        const plan = await pool.scrub.sweep(p, true);
        t.false(plan.some((x) => x.key.includes('/checkpoint/')), `gc of ${p} does not take checkpoints for orphans`);
      }
    } finally {
      await pool.close();
    }
  });
}
