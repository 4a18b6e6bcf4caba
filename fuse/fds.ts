/**
 * The open-file table: FUSE file handle → VDisk, so that read and write never look a path up.
 * Handles start at 1 (fuse-native treats 0 as "no handle") and are reused after release.
 * Several handles may point at the same VDisk (one object per vDisk, shared by every opener).
 */
import type { VDisk } from '../volume/types.js';

export class FdTable {
  private readonly disks: (VDisk | undefined)[] = [undefined];
  private readonly free: number[] = [];
  private count = 0;

  /** Registers an open vDisk and returns its handle. */
  add(disk: VDisk): number {
    const fd = this.free.pop() ?? this.disks.length;
    this.disks[fd] = disk;
    this.count++;
    return fd;
  }

  /** The vDisk behind `fd`, or undefined for an unknown handle. */
  get(fd: number): VDisk | undefined {
    return this.disks[fd];
  }

  /** Forgets `fd`; returns the vDisk it pointed at. */
  release(fd: number): VDisk | undefined {
    const disk = this.disks[fd];
    if (disk === undefined) return undefined;
    this.disks[fd] = undefined;
    this.free.push(fd);
    this.count--;
    return disk;
  }

  /** How many handles are open. */
  get size(): number {
    return this.count;
  }

  /** How many handles point at `disk` (the management API shows it, and refuses a rollback or delete while it is above 0). */
  handlesOf(disk: VDisk): number {
    let n = 0;
    for (const d of this.disks) if (d === disk) n++;
    return n;
  }

  /** The distinct vDisks open right now. */
  openDisks(): VDisk[] {
    const seen = new Set<VDisk>();
    for (const d of this.disks) if (d !== undefined) seen.add(d);
    return [...seen];
  }
}
