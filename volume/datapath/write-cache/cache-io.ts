/**
 * The file I/O of the write cache (local-cache.ts) behind one small seam: every call that changes a file
 * of the write cache, and every fdatasync, goes through a CacheIo. The vPool uses `realCacheIo` (plain
 * node:fs); tests put a fault-injecting one in its place (test/helpers/faulty-io.ts) to fail a given call
 * with EIO or ENOSPC, hold an fdatasync, or model a power cut (keep only what was fdatasynced).
 * Reads go to node:fs directly: a read changes nothing a power cut could lose.
 */
import fs from 'node:fs';
import { fsyncDirAsync } from '../../../util/fsync-dir.js';
import { closeWhenIdle } from '../slot-readers/slot-readers.js';

export interface CacheIo {
  /** open(2); `flags` as node:fs takes them ('w+', 'r+', 'r'). */
  open(file: string, flags: string): number;
  /** pwritev(2) at `position`; returns the bytes written (may be short). */
  writev(fd: number, iov: Uint8Array[], position: number): number;
  /** fdatasync(2), off the event loop. Rejects with the errno error (EBADF included: nothing was synced). */
  fdatasync(fd: number): Promise<void>;
  close(fd: number): void;
  rename(from: string, to: string): void;
  /** unlink(2), synchronous. */
  unlink(file: string): void;
  /** unlink(2) off the event loop; `done` runs when the name is gone (or the unlink failed). */
  unlinkAsync(file: string, done: () => void): void;
  truncate(file: string, length: number): void;
  /** fsync(2) of a directory (makes creations, renames and removals in it durable), off the event loop. */
  fsyncDir(dir: string): Promise<void>;
}

export const realCacheIo: CacheIo = {
  open: (file, flags) => fs.openSync(file, flags),
  writev: (fd, iov, position) => fs.writevSync(fd, iov, position),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
  close: (fd) => closeWhenIdle(fd), // not while a slot reader may be reading it (slot-readers.ts)
  rename: (from, to) => fs.renameSync(from, to),
  unlink: (file) => fs.unlinkSync(file),
  unlinkAsync: (file, done) => fs.unlink(file, () => done()),
  truncate: (file, length) => fs.truncateSync(file, length),
  fsyncDir: (dir) => fsyncDirAsync(dir),
};
