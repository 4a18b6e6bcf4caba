/**
 * Open directory handles of the kernel engine (OPENDIR … RELEASEDIR). The listing is taken when the
 * kernel reads from offset 0 and kept with the handle, so that a directory read in several READDIR
 * pieces is consistent, and a `readdir` that rewinds (offset 0 again) sees a fresh listing.
 */
import type { Dirent } from './encode.js';

export interface DirHandle {
  path: string;
  entries: Dirent[] | undefined;
}

export class DirHandles {
  private readonly handles = new Map<number, DirHandle>();
  private next = 1;

  open(path: string): number {
    const fh = this.next++;
    this.handles.set(fh, { path, entries: undefined });
    return fh;
  }

  get(fh: number): DirHandle | undefined {
    return this.handles.get(fh);
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  get size(): number {
    return this.handles.size;
  }
}
