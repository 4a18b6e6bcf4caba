/**
 * The files of one vDisk's local write cache (see local-cache.ts for the layout and the promises): their
 * paths and listings, the open TLog's journal (create, append, replace), reads of local SCOs, the syncs that
 * make appends survive a host crash, and the cache's fault when the disk fails. LocalCache (local-cache.ts)
 * builds the write cache's state on top: the open SCO, closing SCOs and TLogs, the local restart, eviction.
 */
import fs from 'node:fs';
import path from 'node:path';
import { VolumeError } from '../../../util/errors.js';
import { fsyncDir } from '../../../util/fsync-dir.js';
import type { CacheIo } from './cache-io.js';
import { scoFdBudget, type FdOwner } from './sco-fd-budget.js';
import { encodeRecord, RecordType, tlogName, type TLogRecord } from '../formats/tlog-format.js';
import { scoName, SLOT_SIZE } from '../formats/sco-format.js';

export interface ClosedSco {
  sco: number;
  count: number;
  crc: number;
}

/** A failure of the write-cache disk that makes this cache stop taking writes (see LocalCache.fault). */
export interface CacheFault {
  /** The errno name: EIO, ENOSPC, … */
  code: string;
  message: string;
  /** When it happened (ms since the epoch). */
  since: number;
  /** What every later write and sync is failed with. */
  error: VolumeError;
}

export interface LocalCacheEvents {
  /** A SCO was closed (its record is in the open TLog). */
  onScoClosed(sco: ClosedSco): void;
  /** A TLog was closed and is ready for upload; it names `scos` (ascending, possibly none). */
  onTlogClosed(tlog: number, scos: number[]): void;
  /** The cache just became faulted (once). */
  onFault?(fault: CacheFault): void;
}

/**
 * SCO number → open descriptor, telling `watch` of every change (ReaderView.fdChanged: the kernel engine's
 * reader threads pread these descriptors, reader-view.ts) and the process-wide budget of SCO descriptors
 * (sco-fd-budget.ts) of every one opened, used and closed.
 */
export class ScoFds extends Map<number, number> {
  watch: ((sco: number, fd: number | null) => void) | undefined;

  constructor(private readonly owner: FdOwner) {
    super();
  }

  override set(sco: number, fd: number): this {
    super.set(sco, fd);
    this.watch?.(sco, fd);
    scoFdBudget.use(this.owner, sco); // past the budget, the least recently used descriptors are dropped
    return this;
  }

  /** The descriptor of `sco`, if open, marked as just used (the budget drops the least recently used). */
  use(sco: number): number | undefined {
    const fd = super.get(sco);
    if (fd !== undefined) scoFdBudget.use(this.owner, sco);
    return fd;
  }

  override delete(sco: number): boolean {
    const had = super.delete(sco);
    if (had) {
      scoFdBudget.forget(this.owner, sco);
      this.watch?.(sco, null);
    }
    return had;
  }

  override clear(): void {
    for (const sco of [...this.keys()]) this.delete(sco);
  }
}

/** SCOs without a descriptor synced at a time (syncLocal): as many descriptors opened at once. */
const DETACHED_SYNC_BATCH = 32;

export class CacheFiles implements FdOwner {
  readonly dir: string;
  protected readonly scoDir: string;
  protected readonly tlogDir: string;
  /**
   * Descriptors of local SCOs (the open SCO's, and those read lately: at most the process-wide budget of
   * sco-fd-budget.ts, the others are opened again when read). Closing one: see ReaderView.change.
   */
  readonly fds = new ScoFds(this);
  /**
   * Runs a change of `fds` that closes a descriptor: the vDisk runs it inside its ReaderView.change (a
   * reader thread must not trust a pread on a number that may name another file next).
   */
  guard: <T>(fn: () => T) => T = (fn) => fn();
  protected readonly unsynced = new Set<number>();
  protected unsyncedTlogFds: number[] = [];
  /** SCOs evicted (in the backend only); numbers are never reused, so this only grows (a few bytes a SCO). */
  protected readonly evicted = new Set<number>();
  /** Descriptors of closed journals waiting for the syncs in flight to settle before they are closed. */
  protected readonly closing = new Set<number>();
  protected inflightSync: Promise<void> = Promise.resolve();
  /** Descriptors with an fdatasync in flight, and when the last of those settles (dropFd waits for it). */
  private readonly syncing = new Map<number, Promise<void>>();
  protected dirsDirty = false;

  // the open TLog
  protected journalFd = -1;
  protected journalNo = 0;
  protected journalPos = 0;
  protected journalEvents = 0;
  protected journalScoList: number[] = [];
  protected journalSynced = true;

  nextSco = 1;
  /**
   * Set for good when an fdatasync fails or a write fails with anything but ENOSPC: the kernel may have
   * dropped the dirty pages (a retried fdatasync can then "succeed" over lost data), so this cache takes
   * no more writes and every later sync fails with this cause. A restart starts from what is on disk.
   */
  fault: CacheFault | null = null;

  constructor(dir: string, protected readonly vdiskId: string, protected readonly events: LocalCacheEvents,
    protected readonly io: CacheIo) {
    this.dir = dir;
    this.scoDir = path.join(dir, 'sco');
    this.tlogDir = path.join(dir, 'tlog');
  }

  static exists(dir: string): boolean {
    return fs.existsSync(path.join(dir, 'tlog'));
  }

  /** Closed TLogs present locally, ascending. */
  closedTlogs(): number[] {
    return fs.readdirSync(this.tlogDir).filter((n) => /^[0-9a-f]{8}$/.test(n)).map((n) => parseInt(n, 16)).sort((a, b) => a - b);
  }

  readClosedTlog(tlog: number): Buffer {
    return fs.readFileSync(path.join(this.tlogDir, tlogName(tlog)));
  }

  /** The open TLog's bytes (recovery reads it to bound a damaged closed TLog). */
  readOpenTlog(): Buffer {
    const open = fs.readdirSync(this.tlogDir).find((n) => n.endsWith('.open'));
    return open === undefined ? Buffer.alloc(0) : fs.readFileSync(path.join(this.tlogDir, open));
  }

  /** Replaces `file` with `records` (a TLog's, header included) atomically and durably; returns its length. */
  protected replaceFile(file: string, records: TLogRecord[]): number {
    const bytes = Buffer.concat(records.map((r) => encodeRecord(r)));
    const tmp = `${file}.repair`;
    fs.writeFileSync(tmp, bytes);
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    fsyncDir(this.tlogDir);
    return bytes.length;
  }

  /** Writes closed TLog `tlog` again with `records` (after a repair), atomically. */
  rewriteClosedTlog(tlog: number, records: TLogRecord[]): void {
    const frames = [encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog }), ...records.map((r) => encodeRecord(r))];
    const tmp = `${this.tlogPath(tlog)}.repair`;
    fs.writeFileSync(tmp, Buffer.concat(frames));
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.tlogPath(tlog));
    fsyncDir(this.tlogDir);
  }

  tlogPath(tlog: number): string {
    return path.join(this.tlogDir, tlogName(tlog));
  }

  scoPath(sco: number): string {
    return path.join(this.scoDir, scoName(sco));
  }

  /** SCO numbers present locally, ascending. */
  localScos(): number[] {
    return fs.readdirSync(this.scoDir).filter((n) => /^[0-9a-f]{8}$/.test(n)).map((n) => parseInt(n, 16)).sort((a, b) => a - b);
  }

  /** Reads `n` slots of SCO `sco` from `slot` if the SCO is local; null when it is not. */
  readSlots(sco: number, slot: number, n: number): Buffer | null {
    let fd = this.fds.use(sco);
    if (fd === undefined) {
      // evicted: its unlink may not have run yet, and a descriptor opened now would keep its space for good
      if (this.evicted.has(sco)) return null;
      try {
        fd = fs.openSync(this.scoPath(sco), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      this.fds.set(sco, fd);
    }
    const buf = Buffer.allocUnsafe(n * SLOT_SIZE);
    const got = fs.readSync(fd, buf, 0, buf.length, slot * SLOT_SIZE);
    if (got < buf.length) buf.fill(0, got);
    return buf;
  }

  deleteClosedTlog(tlog: number): void {
    try {
      this.io.unlink(this.tlogPath(tlog));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * Makes everything appended so far survive a host crash. The fdatasyncs run on libuv's threads, so
   * writers go on meanwhile; a call resolves only when its own syncs and any still in flight are done.
   */
  async syncLocal(): Promise<void> {
    if (this.fault !== null) throw this.fault.error;
    const fds: number[] = [];
    // SCOs without a descriptor — found at a local restart, or whose descriptor the budget dropped
    // (sco-fd-budget.ts) — are opened a few at a time for their fdatasync and closed again: a sync of
    // thousands stays within the descriptor limit. A writeback error that came before such an open is still
    // reported: Linux (4.16 on) tells the next fsync of any descriptor an error no fsync has reported yet,
    // and nothing but this cache fsyncs these files.
    const detached: number[] = [];
    for (const sco of this.unsynced) {
      const fd = this.fds.get(sco);
      if (fd === undefined) detached.push(sco);
      else fds.push(fd);
    }
    this.unsynced.clear();
    // the open TLog always, even when nothing is dirty: an fsync must learn that the disk failed (a
    // filesystem shut down answers EIO to it) rather than report success off the in-memory state
    fds.push(this.journalFd);
    this.journalSynced = true;
    const tlogFds = this.unsyncedTlogFds;
    this.unsyncedTlogFds = [];
    const dirs = this.dirsDirty ? [this.scoDir, this.tlogDir] : [];
    this.dirsDirty = false;
    const mine = (async () => {
      try {
        await Promise.all([...fds, ...tlogFds].map((fd) => this.trackedSync(fd)));
        for (let i = 0; i < detached.length; i += DETACHED_SYNC_BATCH) await this.syncDetached(detached.slice(i, i + DETACHED_SYNC_BATCH));
        await Promise.all(dirs.map((d) => this.io.fsyncDir(d)));
      } catch (err) {
        throw this.setFault(err, 'fdatasync');
      } finally {
        for (const fd of tlogFds) this.io.close(fd);
      }
    })();
    const all = Promise.all([this.inflightSync, mine]).then(() => undefined);
    this.inflightSync = all.catch(() => undefined);
    await all;
    // an earlier sync this one waited for may have failed: what it held is not on disk either
    const fault = this.fault as CacheFault | null;
    if (fault !== null) throw fault.error;
  }

  /**
   * Records a failure of the write-cache disk as this cache's fault (the first one wins) and returns the
   * error to throw. `ENOSPC` on a write is not a fault (nothing was lost; the write fails): NO_SPACE.
   */
  protected setFault(err: unknown, op: string): VolumeError {
    const e = err as NodeJS.ErrnoException;
    if (err instanceof VolumeError && this.fault === null) return err;
    if (this.fault !== null) return this.fault.error;
    const code = typeof e?.code === 'string' ? e.code : 'EIO';
    const message = `the write-cache disk failed (${op}: ${e?.message ?? String(err)}); this vDisk takes no more writes until the vPool is restarted`;
    const error = new VolumeError(code === 'ENOSPC' ? 'NO_SPACE' : 'BACKEND', message, { vdisk: this.vdiskId, dir: this.dir, op, errno: code }, { cause: err });
    this.fault = { code, message, since: Date.now(), error };
    this.events.onFault?.(this.fault);
    return error;
  }

  /** Throws the fault, if any: a faulted cache takes no writes. */
  checkWritable(): void {
    if (this.fault !== null) throw this.fault.error;
  }

  /** A write to the cache failed: ENOSPC fails just this write (NO_SPACE); anything else faults the cache. */
  protected writeFailed(err: unknown, op: string): VolumeError {
    const e = err as NodeJS.ErrnoException;
    if (err instanceof VolumeError) return err;
    if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
      return new VolumeError('NO_SPACE', `the write-cache disk is full (${op}): ${e.message}`, { vdisk: this.vdiskId, dir: this.dir, op, errno: e.code }, { cause: err });
    }
    return this.setFault(err, op);
  }

  /**
   * The budget of SCO descriptors (sco-fd-budget.ts) wants SCO `sco`'s closed: out of the reader threads'
   * view at once, closed now — or, when an fdatasync in flight holds it, once that has settled (closed
   * under it, the number could name another file by the time libuv's thread runs it). Its writes, if not
   * synced yet, stay in `unsynced`: the next sync opens the file again for them. False for the SCO being
   * written.
   */
  dropFd(sco: number): boolean {
    const fd = this.fds.get(sco);
    if (fd === undefined) return true;
    if (this.writing(sco)) return false;
    this.guard(() => this.fds.delete(sco));
    const pending = this.syncing.get(fd);
    if (pending === undefined) this.io.close(fd);
    else {
      this.closing.add(fd);
      void pending.then(() => {
        try {
          if (this.closing.delete(fd)) this.io.close(fd);
        } catch {
          // a close that fails leaves nothing to do (and must not be an unhandled rejection)
        }
      });
    }
    return true;
  }

  /** An fdatasync of `fd`, recorded in `syncing` until it settles (dropFd waits for it). */
  private trackedSync(fd: number): Promise<void> {
    const p = this.fdatasync(fd);
    const settled = p.then(() => undefined, () => undefined);
    const prev = this.syncing.get(fd);
    const all = prev === undefined ? settled : Promise.all([prev, settled]).then(() => undefined);
    this.syncing.set(fd, all);
    void all.then(() => {
      if (this.syncing.get(fd) === all) this.syncing.delete(fd);
    });
    return p;
  }

  /** fdatasync of SCOs that have no descriptor here: each opened for it and closed after. */
  private async syncDetached(scos: number[]): Promise<void> {
    const opened: number[] = [];
    try {
      for (const sco of scos) {
        try {
          opened.push(this.io.open(this.scoPath(sco), 'r'));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // ENOENT: evicted, in the backend
        }
      }
      await Promise.all(opened.map((fd) => this.fdatasync(fd)));
    } finally {
      for (const fd of opened) this.io.close(fd);
    }
  }

  /** Whether `sco` is the SCO being written (its descriptor is never dropped): LocalCache knows. */
  protected writing(_sco: number): boolean {
    return false;
  }

  close(): void {
    for (const fd of this.unsyncedTlogFds) this.io.close(fd);
    this.unsyncedTlogFds = [];
    for (const fd of this.closing) this.io.close(fd);
    this.closing.clear();
    for (const fd of this.fds.values()) this.io.close(fd);
    this.fds.clear();
    if (this.journalFd >= 0) this.io.close(this.journalFd);
    this.journalFd = -1;
  }

  /** Removes every local file of this vDisk. */
  destroy(): void {
    this.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  protected openJournal(tlog: number): void {
    const { fd, bytes } = this.createJournal(tlog);
    this.useJournal(tlog, fd, bytes);
  }

  /** Creates journal `tlog` with its header; on failure nothing is left behind (NO_SPACE, or a fault). */
  protected createJournal(tlog: number): { fd: number; bytes: number } {
    this.checkWritable();
    const file = path.join(this.tlogDir, `${tlogName(tlog)}.open`);
    const header = encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog });
    let fd = -1;
    try {
      fd = this.io.open(file, 'w+');
      writevFully(this.io, fd, [header], 0);
    } catch (err) {
      try {
        if (fd >= 0) this.io.close(fd);
        this.io.unlink(file);
      } catch {
        // best effort: a leftover empty journal above the real one is removed at the next start
      }
      throw this.writeFailed(err, `create TLog ${tlog}`);
    }
    return { fd, bytes: header.length };
  }

  protected useJournal(tlog: number, fd: number, bytes: number): void {
    this.journalFd = fd;
    this.journalNo = tlog;
    this.journalPos = bytes;
    this.journalEvents = 0;
    this.journalScoList = [];
    this.journalSynced = false;
    this.dirsDirty = true;
  }

  /**
   * Closes `fd` once every sync started so far has settled. A synced journal's descriptor may still be
   * queued for an fdatasync in libuv's pool: closed now, its number could be reused by the next journal
   * and that fdatasync would sync the wrong file while the caller's fsync reports success.
   */
  protected closeAfterSyncs(fd: number): void {
    this.closing.add(fd);
    void this.inflightSync.then(() => {
      try {
        if (this.closing.delete(fd)) this.io.close(fd);
      } catch {
        // a close that fails leaves nothing to do (and must not be an unhandled rejection)
      }
    });
  }

  protected fdatasync(fd: number): Promise<void> {
    // no EBADF tolerance: a descriptor closed under a queued fdatasync means nothing was synced
    return this.io.fdatasync(fd);
  }

  protected noteScoInJournal(sco: number): void {
    this.journalScoList.push(sco);
  }

  protected append(frame: Buffer): void {
    this.checkWritable();
    try {
      writevFully(this.io, this.journalFd, [frame], this.journalPos);
    } catch (err) {
      throw this.writeFailed(err, `append to TLog ${this.journalNo}`);
    }
    this.journalPos += frame.length;
    this.journalSynced = false;
  }

  /**
   * The read path (volume/datapath/read/read-path.ts): the descriptor of SCO `sco` if the SCO is local (opened on first
   * use, like readSlots), else null. Valid until the SCO is evicted: use it at once, never across an await.
   */
  scoFd(sco: number): number | null {
    let fd = this.fds.use(sco);
    if (fd === undefined) {
      // evicted: its unlink may not have run yet, and a descriptor opened now would keep its space for good
      if (this.evicted.has(sco)) return null;
      const file = this.scoPath(sco);
      if (!fs.existsSync(file)) return null; // evicted: no exception to build on this common path
      try {
        fd = fs.openSync(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      this.fds.set(sco, fd);
    }
    return fd;
  }
}

export function writevFully(io: CacheIo, fd: number, iov: Uint8Array[], position: number): void {
  let total = 0;
  for (const b of iov) total += b.length;
  let done = io.writev(fd, iov, position);
  while (done < total) {
    // short write (rare: a full disk or a signal): finish the rest piece by piece
    let skip = done;
    const rest: Uint8Array[] = [];
    for (const b of iov) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    const n = io.writev(fd, rest, position + done);
    if (n === 0) throw new VolumeError('NO_SPACE', 'write cache: short write', { fd });
    done += n;
  }
}
