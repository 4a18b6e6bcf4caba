/**
 * The snapshot part of the `user.vdisk.*` API (DESIGN §3), merged into ./vdisk-xattr.ts:
 *
 *   user.vdisk.snapshot NAME            take a snapshot
 *   user.vdisk.snapshot.sticky NAME     take a sticky snapshot, or make an existing one sticky
 *   user.vdisk.snapshot.unstick NAME    clear the sticky flag
 *   user.vdisk.snapshot.delete NAME     delete a snapshot (BUSY if it has clones)
 *   user.vdisk.rollback NAME            roll back (BUSY while another process has the vDisk open)
 *   user.vdisk.clone NAME:PATH          clone snapshot NAME (empty: a new snapshot) to PATH, relative to the root
 *   user.vdisk.template 1               make the vDisk a template
 *   user.vdisk.snapshots                view: [{name, uuid, timestamp, sticky, automatic, inBackend, clones}]
 *
 * The open-file table of each mount is registered here (registerMount) so that rollback can tell whether
 * another process holds the vDisk open.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VolumeError } from '../util/errors.js';
import type { VPool } from '../volume/types.js';
import type { FdTable } from './fds.js';
import type { VdiskXattrTable } from './xattr-table.js';

/** How long rollback waits for RELEASEs the kernel may still have in flight (sent after close() returns). */
export const RELEASE_GRACE_MS = 1000;

interface MountInfo {
  fds: FdTable;
  /** The canonical mountpoint: an absolute clone PATH below it is taken as inside the vPool. */
  mountpoint: string;
}
const mounts = new WeakMap<VPool, MountInfo>();

/** Called by fuse/mount.ts for each mount. */
export function registerMount(vpool: VPool, fds: FdTable, mountpoint: string): void {
  mounts.set(vpool, { fds, mountpoint: path.resolve(mountpoint) });
}

/**
 * BUSY unless no handle of this mount holds the vDisk at `p` open (after a grace for pending releases).
 * `mine` handles are the caller's own (the xattr call's file descriptor), not counted as "another process".
 */
export async function waitUnopened(vpool: VPool, p: string, mine = 0): Promise<void> {
  const info = mounts.get(vpool);
  if (info === undefined) return;
  const disk = vpool.vdisk(p);
  const deadline = Date.now() + RELEASE_GRACE_MS;
  for (;;) {
    const n = info.fds.handlesOf(disk);
    if (n <= mine) return;
    if (Date.now() >= deadline) {
      const others = n - mine;
      const what = mine > 0 ? `open in another process` : `open (${others} file handle${others === 1 ? '' : 's'} on the mount: a VM or another program has it)`;
      throw new VolumeError('BUSY', `${p.replace(/^\//, '')} is ${what}`, { path: p, handles: others });
    }
    await sleep(20);
  }
}

/** PATH of a clone value, as an absolute vPool path; INVALID for an empty path or one outside the vPool. */
function clonePath(vpool: VPool, raw: string): string {
  let rel = raw;
  if (raw.startsWith('/')) {
    const mp = mounts.get(vpool)?.mountpoint;
    if (mp === undefined || !(raw === mp || raw.startsWith(mp + '/'))) {
      throw new VolumeError('INVALID', `clone path ${raw} is outside the vPool (give it relative to the vPool root)`, { path: raw });
    }
    rel = raw.slice(mp.length);
  }
  const parts = rel.split('/').filter((x) => x.length > 0);
  if (parts.length === 0 || parts.some((x) => x === '.' || x === '..' || x.includes('\0'))) {
    throw new VolumeError('INVALID', `bad clone path ${JSON.stringify(raw)}: a path relative to the vPool root, without . or ..`, { path: raw });
  }
  return '/' + parts.join('/');
}

export const snapshotTable: VdiskXattrTable = {
  commands: {
    'user.vdisk.snapshot': async (vpool, p, name) => {
      await vpool.snapshots.create(p, name);
    },
    'user.vdisk.snapshot.sticky': async (vpool, p, name) => {
      if (vpool.snapshots.list(p).some((s) => s.name === name)) await vpool.snapshots.setSticky(p, name, true);
      else await vpool.snapshots.create(p, name, { sticky: true });
    },
    'user.vdisk.snapshot.unstick': (vpool, p, name) => vpool.snapshots.setSticky(p, name, false),
    'user.vdisk.snapshot.delete': (vpool, p, name) => vpool.snapshots.remove(p, name),
    'user.vdisk.rollback': async (vpool, p, name) => {
      if (!vpool.snapshots.list(p).some((s) => s.name === name)) {
        // the cheap refusals first, so that a bad name does not wait out the grace
        await vpool.snapshots.rollback(p, name);
        return;
      }
      await waitUnopened(vpool, p);
      await vpool.snapshots.rollback(p, name);
    },
    'user.vdisk.clone': async (vpool, p, value) => {
      const colon = value.indexOf(':');
      if (colon < 0) throw new VolumeError('INVALID', `user.vdisk.clone wants NAME:PATH, got ${JSON.stringify(value.slice(0, 80))}`, { path: p });
      await vpool.snapshots.clone(p, value.slice(0, colon), clonePath(vpool, value.slice(colon + 1)));
    },
    'user.vdisk.template': async (vpool, p, value) => {
      if (value !== '1') throw new VolumeError('INVALID', `user.vdisk.template takes the value 1, got ${JSON.stringify(value.slice(0, 80))}`, { path: p });
      await vpool.snapshots.makeTemplate(p);
    },
  },
  views: {
    'user.vdisk.snapshots': (vpool, p) =>
      vpool.snapshots.list(p).map((s) => ({
        name: s.name, uuid: s.uuid, timestamp: s.timestamp, sticky: s.sticky, automatic: s.automatic, inBackend: s.inBackend, clones: s.clones,
      })),
  },
};
