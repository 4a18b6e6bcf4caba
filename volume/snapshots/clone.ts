/**
 * Clones: a new vDisk with its own namespace whose unwritten clusters read through to its parent's data as
 * of a snapshot. The parent's snapshot is put in the backend first (its TLogs and snapshot list uploaded),
 * then the clone's base (the parent's map as of the snapshot, one clone depth deeper, see ../lineage/clone-base.ts)
 * and its doc (parent, ancestors) are written to the backend, then its local state, then its tree node.
 * A crash before the tree node leaves only unreferenced objects; after it, the clone is whole everywhere.
 */
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { withRetry } from '../backend/retry.js';
import { GC_PREFIX } from '../tree/tree-shipper.js';
import { baseKey, cloneBase, MAX_CLONE_DEPTH } from '../lineage/clone-base.js';
import { stateAt } from '../lineage/chain.js';
import { checkSnapshotName, emptyDoc, type SnapshotMeta, type VDiskDoc } from '../lineage/snapshot-store.js';
import type { VDiskImpl } from '../vdisk/vdisk.js';
import { stamp, type CloneSource, type SnapshotHost } from './snapshot-host.js';
import { createVDisk } from '../vdisk/vdisk-open.js';
import { vdiskMdsPrefix } from '../vdisk/vdisk-meta.js';

const log = logger('clone');

export async function cloneVDisk(mgr: CloneSource, host: SnapshotHost, path: string, name: string, target: string): Promise<void> {
  if (name !== '') checkSnapshotName(name);
  const parent = host.vdiskAt(path);
  host.checkFree(target);
  const depth = parent.docs.doc.ancestors.length + 1;
  if (depth > MAX_CLONE_DEPTH) {
    throw new VolumeError('INVALID', `a clone of ${path} would be at depth ${depth}: the limit is ${MAX_CLONE_DEPTH}`, { path, target, depth });
  }
  // the snapshot is pinned from the moment it is chosen: no delete or rollback may drop it meanwhile
  const pin = (s: SnapshotMeta): SnapshotMeta => {
    mgr.pinned.set(s.uuid, (mgr.pinned.get(s.uuid) ?? 0) + 1);
    return s;
  };
  let snap: SnapshotMeta;
  if (name === '' && parent.template) snap = pin(parent.docs.doc.snapshots[parent.docs.doc.snapshots.length - 1]);
  else if (name === '') snap = await parent.exclusive(async () => pin(await mgr.takeLocked(parent, `clone-${stamp(Date.now())}-${randomUUID().slice(0, 8)}`, {})));
  else snap = pin(mgr.snapshotForClone(parent, name));
  try {
    await makeClone(mgr, host, parent, snap, path, target, { path, snapshot: snap.name, target });
  } finally {
    const n = (mgr.pinned.get(snap.uuid) ?? 1) - 1;
    if (n === 0) mgr.pinned.delete(snap.uuid);
    else mgr.pinned.set(snap.uuid, n);
  }
}

async function makeClone(mgr: CloneSource, host: SnapshotHost, parent: VDiskImpl, snap: SnapshotMeta, path: string, target: string,
  dctx: Record<string, unknown>): Promise<void> {
  const t0 = Date.now();
  // the snapshot must be in the backend: the clone reads the parent's SCOs from there
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
  // until the tree node is committed the clone is garbage: a crash leaves it to be removed at the next start
  await ctx.mds.commit([{ key: GC_PREFIX + id, value: Buffer.from('1') }]);
  const giveUpAt = Date.now() + mgr.backendWaitMs;
  await withRetry(() => ctx.backend.put(baseKey(id), base), { what: `write the base of clone ${id}`, log, cancelled: () => Date.now() > giveUpAt });
  const v = await createVDisk(id, ctx);
  try {
    await mgr.deadline(v.docs.shipNow(doc), 'clone: writing its snapshot list', dctx);
    await v.startAsClone(base, state.size, doc); // a new vDisk: corked at TLog 0, the doc's generation 1 shipped
    await host.addVDisk(target, path, v, [{ key: GC_PREFIX + id, value: null }]);
  } catch (err) {
    v.shutdown();
    v.cache.destroy();
    await ctx.mds.deletePrefix(vdiskMdsPrefix(id));
    await host.discard(id);
    throw err;
  }
  log.info('clone created', { parent: parent.id, path, snapshot: snap.name, target, vdisk: id, depth: doc.ancestors.length, size: v.size, ms: Date.now() - t0 });
}
