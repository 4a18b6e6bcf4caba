/**
 * Clones: a new vDisk with its own namespace whose unwritten clusters read through to its parent's data as
 * of a snapshot. The parent's snapshot is put in the backend first (its TLogs and snapshot list uploaded),
 * then the clone's base (the parent's map as of the snapshot, one clone depth deeper, see clone-base.ts)
 * and its doc (parent, ancestors) are written to the backend, then its local state, then its tree node.
 * A crash before the tree node leaves only unreferenced objects; after it, the clone is whole everywhere.
 */
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { withRetry } from './retry.js';
import { baseKey, cloneBase, decodeBaseInto, MAX_CLONE_DEPTH, stateAt } from './clone-base.js';
import { checkSnapshotName, docShippedKey, emptyDoc, type VDiskDoc } from './snapshot-store.js';
import { stamp, type SnapshotHost, type SnapshotManager } from './snapshots.js';
import { createVDisk } from './vdisk-open.js';
import { corkOps, vdiskMdsPrefix } from './vdisk-meta.js';

const log = logger('clone');

export async function cloneVDisk(mgr: SnapshotManager, host: SnapshotHost, path: string, name: string, target: string): Promise<void> {
  const t0 = Date.now();
  if (name !== '') checkSnapshotName(name);
  const parent = host.vdiskAt(path);
  host.checkFree(target);
  const depth = parent.docs.doc.ancestors.length + 1;
  if (depth > MAX_CLONE_DEPTH) {
    throw new VolumeError('INVALID', `a clone of ${path} would be at depth ${depth}: the limit is ${MAX_CLONE_DEPTH}`, { path, target, depth });
  }
  let snap;
  if (name === '') {
    const snaps = parent.docs.doc.snapshots;
    if (parent.template) snap = snaps[snaps.length - 1];
    else snap = await parent.exclusive(() => mgr.takeLocked(parent, `clone-${stamp(Date.now())}-${randomUUID().slice(0, 8)}`, {}));
  } else {
    snap = mgr.snapshotForClone(parent, name);
  }
  // the snapshot must be in the backend: the clone reads the parent's SCOs from there
  const dctx = { path, snapshot: snap.name, target };
  await mgr.deadline(parent.syncToBackend(), 'clone: uploading the snapshot', dctx);
  const { ctx } = host;
  const state = await mgr.deadline(stateAt(ctx.backend, parent.id, parent.docs.doc, snap.tlog), 'clone: reading the TLogs', dctx);
  const base = cloneBase(state);
  const id = randomUUID();
  const doc: VDiskDoc = {
    ...emptyDoc(), gen: 1,
    parent: { vdiskId: parent.id, snapshot: snap.name, uuid: snap.uuid, tlog: snap.tlog },
    ancestors: [parent.id, ...parent.docs.doc.ancestors],
  };
  const giveUpAt = Date.now() + mgr.backendWaitMs;
  await withRetry(() => ctx.backend.put(baseKey(id), base), { what: `write the base of clone ${id}`, log, cancelled: () => Date.now() > giveUpAt });
  const v = await createVDisk(id, ctx);
  try {
    await mgr.deadline(v.docs.shipNow(doc), 'clone: writing its snapshot list', dctx);
    decodeBaseInto(base, { map: v.map, size: 0, scoCounts: v.scoCounts }, baseKey(id));
    v.size = state.size;
    const ops = corkOps(v, { tlog: 0, scos: [] });
    ops.push(...v.docs.ops(doc), { key: docShippedKey(id), value: Buffer.from('1') });
    await ctx.mds.commit(ops);
    v.docs.doc = doc;
    v.docs.shippedGen = 1;
    await host.addVDisk(target, path, v);
  } catch (err) {
    v.shutdown();
    v.cache.destroy();
    await ctx.mds.deletePrefix(vdiskMdsPrefix(id));
    throw err;
  }
  log.info('clone created', { parent: parent.id, path, snapshot: snap.name, target, vdisk: id, depth, size: v.size, ms: Date.now() - t0 });
}
