/**
 * The syncs of one vDisk's write cache: `syncLocal` makes everything appended so far survive a host crash
 * (the SCOs written, the open TLog's journal, closed journals not synced yet, the directories), with
 * fdatasyncs on libuv's threads; a failed one faults the cache for good (cache-files.ts). And what the syncs in
 * flight mean for closing a descriptor: a journal's once they settle, a SCO's the descriptor budget wants
 * closed (`dropFd`) once its own fdatasync settles.
 */
import type { CacheFault } from './cache-files.js';
import { TlogJournal } from './tlog-journal.js';

/** SCOs without a descriptor synced at a time (syncLocal): as many descriptors opened at once. */
const DETACHED_SYNC_BATCH = 32;

export class CacheSync extends TlogJournal {
  protected readonly unsynced = new Set<number>();
  protected unsyncedTlogFds: number[] = [];
  /** Descriptors of closed journals waiting for the syncs in flight to settle before they are closed. */
  protected readonly closing = new Set<number>();
  protected inflightSync: Promise<void> = Promise.resolve();
  /** Descriptors with an fdatasync in flight, and when the last of those settles (dropFd waits for it). */
  private readonly syncing = new Map<number, Promise<void>>();

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

  override close(): void {
    for (const fd of this.unsyncedTlogFds) this.io.close(fd);
    this.unsyncedTlogFds = [];
    for (const fd of this.closing) this.io.close(fd);
    this.closing.clear();
    super.close();
  }
}
