/**
 * What a router serves of a vPool it does not hold (docs/cluster.md, "Ownership per vDisk"): the vDisks the
 * vPool's owner handed over to it (./vpool-delegate.ts DelegatedVDisk), by path, behind the VPool interface so
 * that the FUSE handlers (fuse/handlers.ts) run on them unchanged — the same open-file table, errnos and xattr
 * code as on the owner. Only the per-file calls come here (router-link/vdisk-routes.ts routes them): read,
 * write, fsync, truncate, the size and allocated bytes of getattr (the tree's attributes come from the vPool's
 * owner), `user.vdisk.info` and `user.vdisk.dtl`. The tree, snapshots and scrubs stay the vPool owner's: here they
 * answer BUSY ("move it back first"), a path this router does not serve answers BUSY naming that.
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
    const busy = (what: string) => (p: string): never => {
      throw new VolumeError('BUSY', `${what} of ${p}: this router serves only its data (delegated by the vPool's owner); move it back to the vPool's owner first (vpoolfs move)`, { path: p });
    };
    const later = (what: string) => (p: string) => Promise.reject(new VolumeError('BUSY', `${what} of ${p}: this router serves only its data (delegated by the vPool's owner); move it back to the vPool's owner first (vpoolfs move)`, { path: p }));
    this.snapshots = {
      create: later('a snapshot'), list: busy('the snapshots'), setSticky: later('a snapshot'), remove: later('a snapshot'),
      rollback: later('a rollback'), clone: later('a clone'), makeTemplate: later('a template'),
    };
    this.scrub = {
      staleScrubMs: 0,
      scrub: later('a scrub'), start: busy('a scrub'), applyPending: later('a scrub'), sweep: later('a sweep'),
      orphans: () => Promise.resolve([]), statusAt: busy('the scrub status'),
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
