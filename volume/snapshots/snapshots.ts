/**
 * Snapshots of the vDisks of a vPool: create, list, sticky, delete, rollback, template; clones are in
 * ./clone.ts. A snapshot is a point in a vDisk's TLog sequence: taking one closes the open TLog and names
 * the last closed one. Every change runs under the vDisk's lock (VDiskImpl.exclusive), so it sees no write
 * half-done, and is committed to the metadata store before it resolves (../lineage/snapshot-store.ts ships it on).
 */
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { stateAt } from '../lineage/chain.js';
import { cloneVDisk } from './clone.js';
import { stamp, type CloneSource, type SnapshotHost } from './snapshot-host.js';
import { addGarbage, checkSnapshotName, rollbackKey, type SnapshotMeta, type VDiskDoc } from '../lineage/snapshot-store.js';
import type { SnapshotApi, SnapshotInfo } from '../types.js';
import type { FamilyMember, VDiskFamily } from '../vdisk/vdisk-context.js';
import type { VDiskImpl } from '../vdisk/vdisk.js';

const log = logger('snapshots');

export const relPath = (p: string): string => p.replace(/^\/+/, '');

function copyDoc(d: VDiskDoc): VDiskDoc {
  return JSON.parse(JSON.stringify(d)) as VDiskDoc;
}

export class SnapshotManager implements SnapshotApi, VDiskFamily, CloneSource {
  /**
   * How long a rollback or a clone waits for the backend (uploads to finish, TLogs to read) before it gives
   * up with BACKEND (EIO), having changed nothing.
   */
  backendWaitMs = 60_000;
  /** uuid → clones being made of that snapshot right now (it may not be deleted or rolled over meanwhile). */
  readonly pinned = new Map<string, number>();

  constructor(private readonly host: SnapshotHost) {}

  /** `p`, or BACKEND once backendWaitMs have passed (the work goes on in the background). */
  async deadline<T>(p: Promise<T>, what: string, context: Record<string, unknown>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VolumeError('BACKEND', `${what}: the backend did not answer within ${this.backendWaitMs} ms`, context)), this.backendWaitMs);
    });
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- VDiskFamily --------------------------------------------------------------------------------

  byId(id: string): VDiskImpl | undefined {
    return this.host.byId(id);
  }

  parentOf(v: FamilyMember): { path: string; snapshot: string } | null {
    const p = v.docs.doc.parent;
    if (p === null) return null;
    const at = this.host.pathOf(p.vdiskId);
    return { path: at === undefined ? '' : relPath(at), snapshot: p.snapshot };
  }

  clonePaths(v: FamilyMember, uuid?: string): string[] {
    // a clone keeps its parent snapshot (it can be neither deleted nor rolled over): a vDisk without that
    // snapshot, or without any, has no clone, and the walk of every vDisk below is skipped. info() asks this
    // of each vDisk (a clean stop's progress, the metrics): with the walk always done that was O(vDisks²)
    const snaps = v.docs.doc.snapshots;
    if (snaps.length === 0 || (uuid !== undefined && !snaps.some((s) => s.uuid === uuid))) return [];
    const out: string[] = [];
    for (const c of this.host.all()) {
      const p = c.docs.doc.parent;
      if (p === null || p.vdiskId !== v.id || (uuid !== undefined && p.uuid !== uuid)) continue;
      const at = this.host.pathOf(c.id);
      if (at !== undefined) out.push(relPath(at));
    }
    return out.sort();
  }

  /** True if any vDisk was cloned from `v` (it cannot be removed). */
  hasClones(v: VDiskImpl): boolean {
    for (const c of this.host.all()) if (c.docs.doc.parent?.vdiskId === v.id) return true;
    return false;
  }

  // ---- SnapshotApi ---------------------------------------------------------------------------------

  list(path: string): SnapshotInfo[] {
    const v = this.host.vdiskAt(path);
    return v.docs.doc.snapshots.map((s) => this.infoOf(v, s));
  }

  async create(path: string, name: string, opts: { sticky?: boolean; automatic?: boolean; timestamp?: number } = {}): Promise<SnapshotInfo> {
    checkSnapshotName(name);
    const v = this.host.vdiskAt(path);
    const s = await v.exclusive(() => this.takeLocked(v, name, opts));
    log.info('snapshot taken', { vdisk: v.id, path, name, tlog: s.tlog, sticky: s.sticky, automatic: s.automatic });
    return this.infoOf(v, s);
  }

  async setSticky(path: string, name: string, sticky: boolean): Promise<void> {
    checkSnapshotName(name);
    const v = this.host.vdiskAt(path);
    await v.exclusive(async () => {
      const doc = copyDoc(v.docs.doc);
      const s = find(doc, name, v.id);
      if (s.sticky === sticky) return;
      s.sticky = sticky;
      await v.docs.commit(doc);
    });
  }

  async remove(path: string, name: string): Promise<void> {
    checkSnapshotName(name);
    const v = this.host.vdiskAt(path);
    await v.exclusive(async () => {
      const doc = copyDoc(v.docs.doc);
      const s = find(doc, name, v.id);
      if (v.template) throw new VolumeError('READ_ONLY', 'a template keeps its snapshot', { vdisk: v.id, name });
      this.checkNoClones(v, s);
      const i = doc.snapshots.indexOf(s);
      const prev = i > 0 ? doc.snapshots[i - 1].tlog : 0;
      const next = i + 1 < doc.snapshots.length ? doc.snapshots[i + 1].tlog : v.cache.openTlogNumber;
      doc.snapshots.splice(i, 1);
      // its TLogs now belong to the next snapshot; what the next one overwrote is garbage for the scrubber
      addGarbage(doc, { fromTlog: prev + 1, toTlog: next, reason: 'snapshots deleted' });
      await v.docs.commit(doc);
    });
    log.info('snapshot deleted', { vdisk: v.id, path, name });
  }

  async rollback(path: string, name: string): Promise<void> {
    checkSnapshotName(name);
    const v = this.host.vdiskAt(path);
    if (v.template) throw new VolumeError('READ_ONLY', 'a template cannot be rolled back', { vdisk: v.id, name });
    await v.exclusive(() => this.rollbackLocked(v, name));
    log.info('rolled back', { vdisk: v.id, path, name, size: v.size });
  }

  clone(path: string, name: string, target: string): Promise<void> {
    return cloneVDisk(this, this.host, path, name, target);
  }

  async makeTemplate(path: string): Promise<void> {
    const v = this.host.vdiskAt(path);
    if (v.template) return;
    await v.exclusive(async () => {
      let doc = v.docs.doc;
      const last = doc.snapshots[doc.snapshots.length - 1];
      for (const s of doc.snapshots) if (s !== last) this.checkNoClones(v, s);
      if (last === undefined || v.cache.hasPending || v.cache.openTlogNumber - 1 > last.tlog) {
        await this.takeLocked(v, `template-${stamp(Date.now())}`, { sticky: true });
        doc = v.docs.doc;
      }
      const next = copyDoc(doc);
      const keep = next.snapshots[next.snapshots.length - 1];
      if (next.snapshots.length > 1) addGarbage(next, { fromTlog: 1, toTlog: keep.tlog, reason: 'made a template' });
      next.snapshots = [keep];
      next.template = true;
      await v.becomeTemplate(next);
    });
    log.info('vDisk made a template', { vdisk: v.id, path });
  }

  // ---- helpers --------------------------------------------------------------------------------------

  /** The snapshot `name` of `v` for a clone: its last one when `name` is empty and `v` is a template. */
  snapshotForClone(v: VDiskImpl, name: string): SnapshotMeta {
    return find(v.docs.doc, name, v.id);
  }

  infoOf(v: VDiskImpl, s: SnapshotMeta): SnapshotInfo {
    return {
      name: s.name, uuid: s.uuid, timestamp: s.timestamp, sticky: s.sticky, automatic: s.automatic, consistent: s.consistent,
      inBackend: s.tlog <= v.corkedTlog && v.docs.shippedGen >= s.gen, clones: this.clonePaths(v, s.uuid),
    };
  }

  /** Takes a snapshot; the caller holds the vDisk's lock. */
  async takeLocked(v: VDiskImpl, name: string, opts: { sticky?: boolean; automatic?: boolean; timestamp?: number }): Promise<SnapshotMeta> {
    if (v.template) throw new VolumeError('READ_ONLY', 'a template takes no new snapshots', { vdisk: v.id, name });
    const doc = copyDoc(v.docs.doc);
    if (doc.snapshots.some((s) => s.name === name)) throw new VolumeError('EXISTS', `snapshot ${name} exists already`, { vdisk: v.id, name });
    v.ship(); // closes the open SCO and TLog: the snapshot covers every write acknowledged so far
    await v.cache.syncLocal();
    const s: SnapshotMeta = {
      name, uuid: randomUUID(), timestamp: opts.timestamp ?? Date.now(), tlog: v.cache.openTlogNumber - 1, sticky: opts.sticky ?? false,
      automatic: opts.automatic ?? false, consistent: true, gen: doc.gen + 1,
    };
    doc.snapshots.push(s);
    await v.docs.commit(doc);
    return s;
  }

  private checkNoClones(v: VDiskImpl, s: SnapshotMeta): void {
    if (this.pinned.has(s.uuid)) throw new VolumeError('BUSY', `snapshot ${s.name} is being cloned`, { vdisk: v.id, name: s.name });
    const clones = this.clonePaths(v, s.uuid);
    if (clones.length > 0) throw new VolumeError('BUSY', `snapshot ${s.name} has clones: ${clones.join(', ')}`, { vdisk: v.id, name: s.name, clones });
  }

  /**
   * Rollback, under the vDisk's lock: everything goes to the backend first; the state as of the snapshot
   * is rebuilt from the backend's TLogs; then an intent is recorded, the new doc (later TLogs dropped) is
   * shipped, and the map, size and doc are committed at once. A crash after the intent finishes the
   * rollback at the next start (../vdisk/vdisk-open.ts); before it, nothing has changed.
   */
  private async rollbackLocked(v: VDiskImpl, name: string): Promise<void> {
    const s = find(v.docs.doc, name, v.id);
    const i = v.docs.doc.snapshots.indexOf(s);
    for (const later of v.docs.doc.snapshots.slice(i + 1)) this.checkNoClones(v, later);
    v.ship();
    const ctx = { vdisk: v.id, name };
    await this.deadline(v.uploader.waitIdle(), 'rollback: uploading what the write cache holds', ctx);
    await this.deadline(v.docs.flush(), 'rollback: shipping the snapshot list', ctx);
    const last = v.cache.openTlogNumber - 1;
    const state = await this.deadline(stateAt(v.ctx.backend, v.id, v.docs.doc, s.tlog), 'rollback: reading the TLogs', ctx);
    const doc = copyDoc(v.docs.doc);
    doc.snapshots = doc.snapshots.slice(0, i + 1);
    if (last > s.tlog) {
      doc.dropped.push([s.tlog + 1, last]);
      addGarbage(doc, { fromTlog: s.tlog + 1, toTlog: last, reason: 'rolled back' });
    }
    doc.gen = v.docs.doc.gen + 1;
    const { mds } = v.ctx;
    await mds.commit([{ key: rollbackKey(v.id), value: Buffer.from(JSON.stringify(doc)) }]);
    await v.docs.shipNow(doc);
    await v.adoptRollback(state, doc);
  }
}

function find(doc: VDiskDoc, name: string, id: string): SnapshotMeta {
  const s = doc.snapshots.find((x) => x.name === name);
  if (s === undefined) throw new VolumeError('NOT_FOUND', `no snapshot named ${name}`, { vdisk: id, name });
  return s;
}
