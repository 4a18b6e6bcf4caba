/**
 * The DTL server's files: one directory per vDisk under `<dir>/vd/<id>/`:
 *
 *   meta        JSON {router, epoch, floor, pending, pendingFloor}: who registered it and when, the trim
 *               floor (entries with tag <= floor are in the backend), and a Clear not committed yet;
 *               replaced atomically (temp, fsync, rename, fsync dir)
 *   seg-<n>     append-only segments of entry records (messages.ts), each with its own checksum
 *
 * A Clear starts a new generation and takes effect at the next Flush: until then readers (GetEntries,
 * GetSCORange) see the entries from before it, so a router that re-ships its history (Clear, entries,
 * Flush) never leaves the DTL holding less than before, even if it dies half way. The segments numbered
 * from `pending` on are the new generation; the Flush deletes the older ones.
 *
 * Crash promises: append() has written the records to the kernel before it returns, so a kill -9 of the
 * server loses none; flush() returns once they are on the disk (fdatasync, and the directory if a
 * segment was created), so a power loss loses no flushed entry. On load, a torn tail of the last
 * segment (a crash mid-write) is cut; a damaged record elsewhere ends that segment and is logged.
 * Memory: only an index per segment (tags, counts, bytes), never the entries.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DtlError } from './errors.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { entryLength, entryTag } from './messages.js';
import type { Logger } from '../util/log.js';

/** A new segment is started once the current one holds this much. */
export const SEGMENT_BYTES = 8 * 2 ** 20;
/** GetEntries answers in chunks of about this size. */
export const CHUNK_BYTES = 1 * 2 ** 20;

interface Segment {
  n: number;
  bytes: number;
  count: number;
  minTag: number;
  maxTag: number;
}

interface Meta {
  router: string;
  epoch: number;
  floor: number;
  /** First segment of a generation started by a Clear and not committed by a Flush yet (0: none). */
  pending?: number;
  /** The trim floor of that generation. */
  pendingFloor?: number;
  /**
   * A Register not backed by a complete copy yet: it becomes `epoch`/`router` at the next flush() (the
   * flush that commits the catch-up's Clear), or at the first append when no Clear is pending (then the
   * entries go into the copy readers see). Recovery prefers the highest epoch, so an epoch taken at
   * Register would let a half-shipped copy (the router died mid catch-up) win over a complete older one.
   */
  nextEpoch?: number;
  nextRouter?: string;
}

export interface ScoRange {
  epoch: number;
  router: string;
  /** Lowest and highest tag above the trim floor (0, 0 when empty). */
  first: number;
  last: number;
  /** Entries kept (an upper bound when a segment is partly trimmed). */
  entries: number;
}

export class VDiskLog {
  private segments: Segment[] = [];
  private fd = -1;
  private unsynced = false;
  /** fdatasyncs of segments closed with unsynced entries, running on libuv's threads (sync() waits for them). */
  private closing: Promise<void>[] = [];
  private dirUnsynced = false;
  /** The fdatasync sync() queued on the open segment's descriptor, if any (closeFd() waits for it). */
  private syncingFd: { fd: number; done: Promise<void> } | null = null;
  /**
   * Set once an fdatasync of this log's files failed: the kernel may have dropped the dirty pages, so a
   * later fdatasync could "succeed" over entries that never reached the disk. From then on every append,
   * sync and flush fails with this error (the client goes degraded) until the server restarts and loads
   * what is really on the disk.
   */
  private fault: DtlError | null = null;
  /** The last sync()'s work: a later sync() waits for it (else it could resolve before an earlier one failed). */
  private lastSync: Promise<void> = Promise.resolve();

  private constructor(readonly dir: string, private meta: Meta) {}

  /** Registers (or re-registers) a vDisk: creates its directory, records router and epoch. Keeps entries. */
  static create(dir: string, router: string, epoch: number): VDiskLog {
    fs.mkdirSync(dir, { recursive: true });
    fsyncDir(path.dirname(dir));
    // epoch 0 until the first flush: an empty or half-shipped copy must not outrank any complete one
    const log = new VDiskLog(dir, { router, epoch: 0, floor: 0, nextEpoch: epoch, nextRouter: router });
    log.writeMeta();
    return log;
  }

  /** Loads a vDisk directory left by an earlier run (cutting a torn tail). Null if it has no meta. */
  static load(dir: string, log: Logger): VDiskLog | null {
    let meta: Meta;
    try {
      meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta'), 'utf8')) as Meta;
    } catch {
      return null;
    }
    const v = new VDiskLog(dir, meta);
    const names = fs.readdirSync(dir).filter((n) => /^seg-[0-9a-f]{8}$/.test(n)).sort();
    for (let i = 0; i < names.length; i++) {
      const file = path.join(dir, names[i]);
      const buf = fs.readFileSync(file);
      const seg: Segment = { n: parseInt(names[i].slice(4), 16), bytes: 0, count: 0, minTag: Infinity, maxTag: 0 };
      let pos = 0;
      while (pos < buf.length) {
        const r = entryLength(buf, pos);
        if (!r.ok) {
          const torn = i === names.length - 1 && !r.complete;
          const fields = { file, offset: pos, reason: r.reason, dropped: buf.length - pos };
          if (torn) log.warn('cut a torn tail off a DTL segment (a crash mid-write)', fields);
          else log.error('a damaged record ends a DTL segment; the entries after it are lost', fields);
          fs.truncateSync(file, pos);
          break;
        }
        const tag = entryTag(buf, pos);
        seg.minTag = Math.min(seg.minTag, tag);
        seg.maxTag = Math.max(seg.maxTag, tag);
        seg.count++;
        pos += r.length;
      }
      seg.bytes = pos;
      v.segments.push(seg);
    }
    return v;
  }

  get epoch(): number {
    return this.meta.epoch;
  }

  /** Records a new registration; it counts (range().epoch) from the next flush(), see Meta.nextEpoch. */
  register(router: string, epoch: number): void {
    this.meta = { ...this.meta, nextRouter: router, nextEpoch: epoch };
    this.writeMeta();
  }

  /** The registration the next flush() commits, or null. */
  private takeNext(): { router: string; epoch: number } | Record<string, never> {
    if (this.meta.nextEpoch === undefined) return {};
    return { router: this.meta.nextRouter ?? this.meta.router, epoch: this.meta.nextEpoch };
  }

  /** Appends sound entry records (`run` = the records back to back, `tags` their tags). In the kernel on return. */
  append(run: Buffer, tags: number[]): void {
    if (this.fault !== null) throw this.fault;
    if (run.length === 0) return;
    if ((this.meta.pending ?? 0) === 0 && this.meta.nextEpoch !== undefined) {
      // no Clear pending: the new registration's entries go into the copy readers see, which is its now
      this.meta = { ...this.meta, ...this.takeNext(), nextEpoch: undefined, nextRouter: undefined };
      this.writeMeta();
    }
    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || this.fd < 0 || seg.bytes >= SEGMENT_BYTES) seg = this.startSegment();
    let done = 0;
    try {
      while (done < run.length) done += fs.writeSync(this.fd, run, done, run.length - done, seg.bytes + done);
    } catch (err) {
      throw new DtlError('STORAGE', `writing DTL entries to ${this.segPath(seg.n)} failed: ${(err as Error).message}`, {}, { cause: err });
    }
    seg.bytes += run.length;
    seg.count += tags.length;
    for (const t of tags) {
      if (t < seg.minTag) seg.minTag = t;
      if (t > seg.maxTag) seg.maxTag = t;
    }
    this.unsynced = true;
  }

  /** Every entry appended so far on the disk; then a pending Clear is committed (the older generation goes). */
  async flush(): Promise<void> {
    await this.sync();
    const pending = this.meta.pending ?? 0;
    const next = this.takeNext();
    if (pending === 0) {
      if (this.meta.nextEpoch === undefined) return;
      this.meta = { ...this.meta, ...next, nextEpoch: undefined, nextRouter: undefined };
      this.writeMeta();
      return;
    }
    const older = this.segments.filter((s) => s.n < pending);
    this.segments = this.segments.filter((s) => s.n >= pending);
    this.meta = { ...this.meta, ...next, nextEpoch: undefined, nextRouter: undefined, floor: this.meta.pendingFloor ?? 0, pending: 0, pendingFloor: 0 };
    this.writeMeta();
    for (const seg of older) fs.rmSync(this.segPath(seg.n), { force: true });
  }

  /** Every entry appended so far on the disk (no commit of a pending Clear). */
  async sync(): Promise<void> {
    if (this.fault !== null) throw this.fault;
    const fd = this.fd;
    const work: Promise<unknown>[] = [this.lastSync, ...this.closing];
    this.closing = [];
    if (this.unsynced && fd >= 0) {
      this.unsynced = false;
      // no EBADF tolerance: closeFd() keeps the descriptor open until this fdatasync has run
      const p = new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
      this.syncingFd = { fd, done: p.catch(() => undefined) };
      work.push(p);
    }
    if (this.dirUnsynced) {
      this.dirUnsynced = false;
      work.push(fs.promises.open(this.dir, 'r').then(async (h) => { await h.sync(); await h.close(); }));
    }
    const all = Promise.all(work).then(() => undefined); // (not the array: each would hold the one before)
    this.lastSync = all;
    all.catch(() => undefined); // reported by this sync() and by the next one
    try {
      await all;
    } catch (err) {
      // the dirty state was taken above and cannot be trusted to a retry: the log is faulted for good
      this.fault ??= new DtlError('STORAGE', `flushing DTL entries in ${this.dir} failed: ${(err as Error).message}; ` +
        'this log takes no more entries or flushes until the server restarts', {}, { cause: err });
      throw this.fault;
    }
  }

  /** Drops the entries with tag <= `sco` (their SCOs are in the backend), in both generations. */
  removeUpTo(sco: number): void {
    const pending = this.meta.pending ?? 0;
    const floor = Math.max(this.meta.floor, sco);
    const pendingFloor = pending === 0 ? 0 : Math.max(this.meta.pendingFloor ?? 0, sco);
    if (floor === this.meta.floor && pendingFloor === (this.meta.pendingFloor ?? 0)) return;
    this.meta = { ...this.meta, floor, pendingFloor };
    this.writeMeta();
    const last = this.segments[this.segments.length - 1];
    for (const seg of [...this.segments]) {
      if (seg.maxTag > (pending !== 0 && seg.n >= pending ? pendingFloor : floor)) continue;
      if (seg === last) this.closeFd(true);
      this.segments.splice(this.segments.indexOf(seg), 1);
      fs.rmSync(this.segPath(seg.n), { force: true });
    }
  }

  /**
   * Starts a new, empty generation (the client ships its history again); it replaces the entries before it
   * at the next flush(). A second Clear before that drops the uncommitted generation only.
   */
  clear(): void {
    let pending = this.meta.pending ?? 0;
    this.closeFd(pending !== 0);
    if (pending !== 0) {
      for (const seg of this.segments.filter((s) => s.n >= pending)) fs.rmSync(this.segPath(seg.n), { force: true });
      this.segments = this.segments.filter((s) => s.n < pending);
    } else {
      pending = (this.segments[this.segments.length - 1]?.n ?? 0) + 1;
    }
    this.meta = { ...this.meta, pending, pendingFloor: 0 };
    this.writeMeta();
  }

  /** The committed generation: what readers see. */
  private committed(): { segments: Segment[]; floor: number } {
    const pending = this.meta.pending ?? 0;
    return { segments: pending === 0 ? [...this.segments] : this.segments.filter((s) => s.n < pending), floor: this.meta.floor };
  }

  range(): ScoRange {
    const { segments, floor } = this.committed();
    let first = Infinity;
    let last = 0;
    let entries = 0;
    for (const s of segments) {
      if (s.count === 0 || s.maxTag <= floor) continue;
      first = Math.min(first, Math.max(s.minTag, floor + 1));
      last = Math.max(last, s.maxTag);
      entries += s.count;
    }
    return { epoch: this.meta.epoch, router: this.meta.router, first: first === Infinity ? 0 : first, last, entries };
  }

  /** The entries with tag > max(floor, fromTag - 1), in log order, as runs of records of about CHUNK_BYTES. */
  *entries(fromTag: number): Generator<{ run: Buffer; count: number }> {
    const { segments, floor } = this.committed();
    const min = Math.max(floor + 1, fromTag);
    for (const seg of segments) {
      if (seg.maxTag < min) continue;
      let buf: Buffer;
      try {
        buf = fs.readFileSync(this.segPath(seg.n)).subarray(0, seg.bytes);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // trimmed meanwhile
        throw new DtlError('STORAGE', `reading ${this.segPath(seg.n)} failed: ${(err as Error).message}`, {}, { cause: err });
      }
      let parts: Buffer[] = [];
      let size = 0;
      let pos = 0;
      while (pos < buf.length) {
        const r = entryLength(buf, pos);
        if (!r.ok) throw new DtlError('STORAGE', `a damaged entry in ${this.segPath(seg.n)} at ${pos}: ${r.reason}`);
        if (entryTag(buf, pos) >= min) {
          parts.push(buf.subarray(pos, pos + r.length));
          size += r.length;
          if (size >= CHUNK_BYTES) {
            yield { run: Buffer.concat(parts), count: parts.length };
            parts = [];
            size = 0;
          }
        }
        pos += r.length;
      }
      if (parts.length > 0) yield { run: Buffer.concat(parts), count: parts.length };
    }
  }

  /** Removes the vDisk's directory and everything in it. */
  destroy(): void {
    this.closeFd(true);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  close(): void {
    this.closeFd();
  }

  private startSegment(): Segment {
    this.closeFd(); // a full segment is made durable as it is closed (in the background; sync() waits for it)
    const last = this.segments[this.segments.length - 1];
    const seg: Segment = { n: Math.max(last === undefined ? 1 : last.n + 1, this.meta.pending ?? 0), bytes: 0, count: 0, minTag: Infinity, maxTag: 0 };
    this.fd = fs.openSync(this.segPath(seg.n), 'w');
    this.segments.push(seg);
    this.dirUnsynced = true;
    return seg;
  }

  /**
   * Closes the open segment. Unless it is about to be deleted, its unsynced entries are made durable first,
   * off the event loop: a synchronous fdatasync of up to 8 MiB here stalled every connection of the server
   * (a segment rolls over every 2,000 clusters of a vDisk; a Clear closes one too). The descriptor is closed
   * only after its fdatasync, so a sync() that raced with it and got EBADF (or a reused number) finds the
   * data durable all the same; sync() waits for these.
   */
  private closeFd(deleting = false): void {
    const fd = this.fd;
    if (fd >= 0) {
      if (this.unsynced && !deleting) {
        const done = new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => {
          fs.close(fd, () => undefined);
          if (err) reject(err);
          else resolve();
        }));
        done.catch(() => undefined); // reported by the sync() that takes it
        this.closing.push(done);
      } else if (this.syncingFd?.fd === fd) {
        // a sync() has an fdatasync of it queued in libuv's pool: closed now, the number could be reused by
        // the next segment and that fdatasync would sync the wrong file while flush() reports success
        void this.syncingFd.done.then(() => fs.close(fd, () => undefined));
      } else {
        fs.closeSync(fd);
      }
    }
    this.syncingFd = null;
    this.fd = -1;
    this.unsynced = false;
  }

  private segPath(n: number): string {
    return path.join(this.dir, `seg-${n.toString(16).padStart(8, '0')}`);
  }

  private writeMeta(): void {
    const tmp = path.join(this.dir, 'meta.tmp');
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, JSON.stringify(this.meta));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path.join(this.dir, 'meta'));
    fsyncDir(this.dir);
  }
}
