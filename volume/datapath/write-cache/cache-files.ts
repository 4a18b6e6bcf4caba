/**
 * The files of one vDisk's local write cache (see local-cache.ts for the layout and the promises): their
 * paths and listings, reads of closed TLogs and of local SCOs through the SCO descriptors (sco-fds.ts), and
 * the cache's fault when the disk fails. Built on, in this order: tlog-journal.ts (the open TLog's journal and
 * the TLog files written), cache-sync.ts (the syncs that make appends survive a host crash, and the drop of a
 * descriptor the budget wants closed), local-cache.ts (the open SCO, closing SCOs and TLogs, the local
 * restart, eviction).
 */
import fs from 'node:fs';
import path from 'node:path';
import { VolumeError } from '../../../util/errors.js';
import type { CacheIo } from './cache-io.js';
import type { FdOwner } from './sco-fd-budget.js';
import { ScoFds } from './sco-fds.js';
import { tlogName } from '../formats/tlog-format.js';
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

export abstract class CacheFiles implements FdOwner {
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
  /** SCOs evicted (in the backend only); numbers are never reused, so this only grows (a few bytes a SCO). */
  protected readonly evicted = new Set<number>();

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
    const fd = this.scoFd(sco);
    if (fd === null) return null;
    const buf = Buffer.allocUnsafe(n * SLOT_SIZE);
    const got = fs.readSync(fd, buf, 0, buf.length, slot * SLOT_SIZE);
    if (got < buf.length) buf.fill(0, got);
    return buf;
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
   * The descriptor of SCO `sco` if the SCO is local (opened on first use), else null: readSlots's, and the read
   * path's (volume/datapath/read/read-path.ts). Valid until the SCO is evicted: use it at once, never across an await.
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

  /** Closes every descriptor of this cache (each layer closes its own, then this one's). */
  close(): void {
    for (const fd of this.fds.values()) this.io.close(fd);
    this.fds.clear();
  }

  /** Removes every local file of this vDisk. */
  destroy(): void {
    this.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** The budget of SCO descriptors wants SCO `sco`'s closed (cache-sync.ts). */
  abstract dropFd(sco: number): boolean;
}
