/**
 * In-place reads of a `file://` backend (read-cache.ts, "In place"; docs/read-path.md, "A file backend is
 * read in place"): open descriptors of backend objects' files, found by key, that the read path reads like
 * write-cache SCOs instead of copying pieces into the read cache. Same filesystem as the read cache only
 * (its reads then cost what a cached piece's did); an object on another filesystem (a network mount), a
 * store without `localPath` (S3, encrypted) keeps the copy-in cache.
 *
 * Descriptors of recently read objects stay open (MAX_OBJECT_FDS, least recently used closed first); one not
 * used for OBJECT_FD_IDLE_MS is closed by a sweep, and so is one whose key names another file now (a backend
 * move switched), so that an object deleted meanwhile (a scrub, a removed vDisk) gives back its space soon.
 */
import fs from 'node:fs';
import type { BlobStore } from '../../backend/types.js';
import { closeWhenIdle } from '../slot-readers/slot-readers.js';

/** Descriptors of backend objects read in place kept open (least recently used closed first). */
const MAX_OBJECT_FDS = 64;
/** An object descriptor not used for this long is closed (by a sweep every OBJECT_FD_IDLE_MS). */
const OBJECT_FD_IDLE_MS = 2000;

export class ObjectFds {
  /** Object key → its file's open descriptor and whether it was used since the last sweep, in LRU order. */
  private readonly fds = new Map<string, { fd: number; file: string; used: boolean }>();
  private sweep: NodeJS.Timeout | null = null;
  /** Whether the last object opened was on the read cache's filesystem (read-ahead skips in-place objects). */
  lastInPlace = true;
  /** Reads served in place from the backend's files (tests and logs look at it). */
  reads = 0;

  /** `dev`: the device of the read cache's directory: objects on it are read in place. */
  constructor(private readonly backend: BlobStore, private readonly dev: number) {}

  /**
   * An open descriptor of the file of backend object `key` when it is read in place, else undefined (not a
   * local file, on another filesystem, missing). Valid until the next await: use it at once. The caller
   * verifies what it reads.
   */
  fdOf(key: string): number | undefined {
    if (this.backend.localPath === undefined) return undefined;
    // by key: a read after random overwrites asks for hundreds of objects per MiB, a path built each time cost more than the read
    const known = this.fds.get(key);
    if (known !== undefined) {
      this.fds.delete(key);
      this.fds.set(key, known);
      known.used = true;
      this.reads++;
      return known.fd;
    }
    const file = this.backend.localPath(key);
    if (file === null) return undefined;
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return undefined; // missing: the careful path's GET says so
    }
    let st: fs.Stats;
    try {
      st = fs.fstatSync(fd);
    } catch {
      fs.closeSync(fd);
      return undefined;
    }
    this.lastInPlace = st.dev === this.dev;
    if (!this.lastInPlace || !st.isFile()) {
      fs.closeSync(fd);
      return undefined;
    }
    if (this.fds.size >= MAX_OBJECT_FDS) {
      const [oldest, o] = this.fds.entries().next().value as [string, { fd: number }];
      this.fds.delete(oldest);
      closeWhenIdle(o.fd);
    }
    this.fds.set(key, { fd, file, used: true });
    this.sweep ??= setInterval(() => this.sweepIdle(), OBJECT_FD_IDLE_MS).unref();
    this.reads++;
    return fd;
  }

  /**
   * Closes the descriptors not used since the last sweep (an object deleted meanwhile frees its space), and
   * those whose key now names another file (a backend move switched to the new backend).
   */
  private sweepIdle(): void {
    for (const [key, o] of this.fds) {
      if (o.used && this.backend.localPath?.(key) === o.file) {
        o.used = false;
        continue;
      }
      this.fds.delete(key);
      closeWhenIdle(o.fd);
    }
    if (this.fds.size === 0 && this.sweep !== null) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
  }

  /** Closes every descriptor (the vPool closes, a vDisk is removed). */
  closeAll(): void {
    for (const o of this.fds.values()) closeWhenIdle(o.fd);
    this.fds.clear();
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweep = null;
  }
}
