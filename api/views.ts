/**
 * The JSON shapes the API answers (docs/api.yaml has them as schemas): a vDisk, a snapshot, a directory
 * entry. Built from the volume layer's views plus what only the mount knows (open handles).
 */
import { shownInfo } from '../fuse/vdisk-xattr.js';
import type { NodeStat, ScrubStatus, SnapshotInfo } from '../volume/types.js';
import type { ApiContext } from './context.js';
import { shown } from './paths.js';

export type SnapshotView = SnapshotInfo;

/** A snapshot as the API shows it: all of SnapshotInfo (a copy, so that later changes to `s` don't show). */
export function snapshotView(s: SnapshotInfo): SnapshotView {
  return { ...s, clones: [...s.clones] };
}

/**
 * Where scrubbing of the vDisk stands (docs/scrubbing.md): the last scrub applied, how the last run ended
 * (failed and stale ones too; kept across restarts), the garbage it left, whether one runs.
 */
function scrubView(ctx: ApiContext, p: string): Pick<ScrubStatus, 'last' | 'lastRun' | 'garbageBytes' | 'running'> {
  const st = ctx.vpool.scrub.statusAt(p);
  return { last: st.last, lastRun: st.lastRun, garbageBytes: st.garbageBytes, running: st.running };
}

export function vdiskView(ctx: ApiContext, p: string) {
  const { vpool } = ctx;
  const st = vpool.stat(p);
  const disk = vpool.vdisk(p);
  const i = disk.info();
  return {
    path: shown(p),
    // allocatedBytes is what `du` counts: the clusters this vDisk wrote itself (= ownBytes)
    ...shownInfo(i),
    ownBytes: i.allocatedBytes,
    snapshots: vpool.snapshots.list(p).map(snapshotView),
    openHandles: ctx.fds()?.handlesOf(disk) ?? 0,
    scrub: scrubView(ctx, p),
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtime: Math.floor(st.mtimeMs),
  };
}

export type VDiskView = ReturnType<typeof vdiskView>;

export interface EntryView {
  name: string;
  path: string;
  kind: 'dir' | 'vdisk';
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  /** The vDisk's view, for a vDisk. */
  vdisk?: VDiskView;
}

/** `delegated`: the view of a vDisk delegated to another router, from it (api/forwarded.ts). */
export function entryView(ctx: ApiContext, p: string, st: NodeStat, delegated?: VDiskView): EntryView {
  const base = { name: p.slice(p.lastIndexOf('/') + 1), path: shown(p), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs) };
  return st.kind === 'dir' ? { ...base, kind: 'dir' } : { ...base, kind: 'vdisk', vdisk: delegated ?? vdiskView(ctx, p) };
}
