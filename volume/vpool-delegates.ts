/**
 * What a router serves of a vPool it does not hold (docs/cluster.md, "Ownership per vDisk"): the vDisks the
 * vPool's owner handed over to it (./vpool-delegate.ts DelegatedVDisk), by path, behind the VPool interface so
 * that the FUSE handlers (fuse/handlers.ts) run on them unchanged — the same open-file table, errnos and xattr
 * code as on the owner. Only the per-file calls come here (router-link/vdisk-routes.ts routes them): read,
 * write, fsync, truncate, the size and allocated bytes of getattr (the tree's attributes come from the vPool's
 * owner), `user.vdisk.info`, `user.vdisk.dtl`, and the vDisk's snapshots: create, list, sticky, delete and rollback
 * (each vDisk's own SnapshotManager, ./vpool-delegate.ts). `user.vdisk.info` answers whole here: a delegated vDisk
 * has no parent and no clones (the owner hands over neither a clone nor a vDisk with clones), its template flag is
 * in its document, and its scrub status is what its last scrub left (no scrub runs while it is away). What needs
 * the vPool's tree stays the owner's and answers BUSY ("move it back first"): a clone (a new file), making it a
 * template (a source of clones, which the owner makes), scrubs; a path this router does not serve answers BUSY
 * naming that.
 */
import { VolumeError } from '../util/errors.js';
import { setDtlMode } from './vdisk/dtl-hook.js';
import type { DelegatedVDisk } from './vpool-delegate.js';
import type { CacheStats, DtlMode, NodeStat, ScrubApi, SnapshotApi, StatFs, VDisk, VPool } from './types.js';

export class DelegatedVPool implements VPool {
  private readonly byPath = new Map<string, DelegatedVDisk>();
  readonly snapshots: SnapshotApi;
  readonly scrub: ScrubApi;

  constructor(readonly name: string, readonly routerId: string) {
    const moveBack = (what: string, p: string, why: string) =>
      new VolumeError('BUSY', `${what} of ${p}: ${why}; this router serves only its data (delegated by the vPool's owner): move it back to the vPool's owner first (vpoolfs move FILE --to <the vPool's owner>)`, { path: p });
    const later = (what: string, why: string) => (p: string) => Promise.reject(moveBack(what, p, why));
    this.snapshots = {
      create: (p, name, opts) => this.of(p).snapshots.create(p, name, opts),
      list: (p) => this.of(p).snapshots.list(p),
      setSticky: (p, name, sticky) => this.of(p).snapshots.setSticky(p, name, sticky),
      remove: (p, name) => this.of(p).snapshots.remove(p, name),
      rollback: (p, name) => this.of(p).snapshots.rollback(p, name),
      clone: later('a clone', 'a clone is a new file in the vPool\'s tree, made by the vPool\'s owner'),
      makeTemplate: later('a template', 'a template is a source of clones, made by the vPool\'s owner'),
    };
    const scrubs = 'its scrubs run on the vPool\'s owner';
    this.scrub = {
      staleScrubMs: 0,
      scrub: later('a scrub', scrubs), start: (p) => { throw moveBack('a scrub', p, scrubs); }, applyPending: later('a scrub', scrubs), sweep: later('a sweep', scrubs),
      orphans: () => Promise.resolve([]), statusAt: (p) => this.of(p).scrub.statusAt(p),
      setLimits: () => undefined,
      totals: () => ({ scrubs: 0, failures: 0, stale: 0, bytesRead: 0, bytesWritten: 0, bytesFreed: 0, seconds: 0 }),
    };
  }

  add(p: string, d: DelegatedVDisk): void {
    this.byPath.set(p, d);
  }

  remove(p: string): DelegatedVDisk | undefined {
    const d = this.byPath.get(p);
    this.byPath.delete(p);
    return d;
  }

  /** The path of the delegated vDisk `id`, if this router serves it. */
  pathOf(id: string): string | undefined {
    for (const [p, d] of this.byPath) if (d.vdisk.id === id) return p;
    return undefined;
  }

  all(): Array<[string, DelegatedVDisk]> {
    return [...this.byPath];
  }

  private of(p: string): DelegatedVDisk {
    const d = this.byPath.get(p);
    if (d === undefined) throw new VolumeError('BUSY', `${p} is not a vDisk this router serves (the vPool's owner serves it)`, { path: p });
    return d;
  }

  vdisk(p: string): VDisk {
    return this.of(p).vdisk;
  }

  /** Only size and allocated bytes are this router's to say (router-link/vdisk-routes.ts takes the rest from the tree). */
  stat(p: string): NodeStat {
    const v = this.of(p).vdisk;
    return { kind: 'file', ino: 0, mode: 0o100600, uid: 0, gid: 0, size: v.size, allocatedBytes: v.allocatedBytes, nlink: 1, atimeMs: 0, mtimeMs: 0, ctimeMs: 0 };
  }

  setDtlMode(p: string, mode: DtlMode): Promise<void> {
    return setDtlMode(this.of(p).vdisk, mode);
  }

  getXattr(): Buffer | undefined {
    return undefined;
  }

  listXattr(): string[] {
    return [];
  }

  statfs(): StatFs {
    throw new VolumeError('BUSY', 'statfs: answered by the vPool\'s owner', {});
  }

  cacheStats(): CacheStats {
    return { writeCacheBytes: 0, writeCacheLimit: 0, writeCacheWaiters: 0, stateDiskFull: false, readCacheBytes: 0, readCacheLimit: 0, readCacheHits: 0, readCacheMisses: 0 };
  }

  setCacheLimits(): void {
    // each delegated vDisk has the limits it was opened with
  }

  async syncToBackend(): Promise<void> {
    for (const d of this.byPath.values()) await d.vdisk.syncToBackend();
  }

  async close(): Promise<void> {
    for (const [p, d] of [...this.byPath]) {
      await d.close();
      this.byPath.delete(p);
    }
  }

  // the tree is the vPool owner's: router-link/vdisk-routes.ts never sends these here
  readdir(p: string): string[] { return this.tree(p); }
  mkdir(p: string): Promise<void> { return this.treeLater(p); }
  rmdir(p: string): Promise<void> { return this.treeLater(p); }
  createFile(p: string): Promise<void> { return this.treeLater(p); }
  unlink(p: string): Promise<void> { return this.treeLater(p); }
  rename(p: string): Promise<void> { return this.treeLater(p); }
  setAttrs(p: string): Promise<void> { return this.treeLater(p); }
  setXattr(p: string): Promise<void> { return this.treeLater(p); }
  removeXattr(p: string): Promise<void> { return this.treeLater(p); }

  private tree(p: string): never {
    throw new VolumeError('BUSY', `${p}: the vPool's tree is served by its owner, not by this router`, { path: p });
  }

  private treeLater(p: string): Promise<void> {
    return Promise.reject(new VolumeError('BUSY', `${p}: the vPool's tree is served by its owner, not by this router`, { path: p }));
  }
}
