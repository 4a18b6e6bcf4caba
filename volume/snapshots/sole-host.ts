/**
 * What the snapshot code (./snapshots.ts) needs of a vPool, for one vDisk served alone: a vDisk delegated to this
 * router by the vPool's owner (../vpool-delegate.ts, docs/cluster.md "Ownership per vDisk"). Its snapshot list is
 * its own document (../lineage/snapshot-store.ts), so create, list, sticky, delete and rollback run here as on
 * the owner. There is no tree: what needs one — a clone's new file, a removal — answers BUSY, and so does a clone
 * of it (refused before it gets here: ../vpool-delegates.ts). A delegated vDisk has no family (the owner hands
 * over neither a clone nor a vDisk with clones, and no clone of it can be made while it is away): it is the only
 * vDisk this host knows.
 */
import { VolumeError } from '../../util/errors.js';
import type { VDiskContext } from '../vdisk/vdisk-context.js';
import type { VDiskImpl } from '../vdisk/vdisk.js';
import type { SnapshotHost } from './snapshot-host.js';

export function soleVDiskHost(v: VDiskImpl, ctx: VDiskContext): SnapshotHost {
  const noTree = (what: string): never => {
    throw new VolumeError('BUSY', `${what}: the vPool's tree is served by its owner, not by this router (it serves only vDisk ${v.id}'s data)`, { vdisk: v.id });
  };
  return {
    ctx,
    vdiskAt: () => v,
    all: () => [v],
    byId: (id) => (id === v.id ? v : undefined),
    pathOf: () => undefined,
    checkFree: (p) => noTree(`a new file at ${p}`),
    addVDisk: (p) => Promise.resolve().then(() => noTree(`a new file at ${p}`)),
    discard: (id) => Promise.resolve().then(() => noTree(`removing vDisk ${id}`)),
  };
}
