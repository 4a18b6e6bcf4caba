/**
 * The background uploader of one vDisk: ships each closed TLog's SCOs, then the TLog itself, in TLog
 * order, retrying with back-off for as long as the backend is away. Once a TLog is in the backend the
 * vDisk "corks" it (persists its cluster map, marks the SCOs evictable) through `onUploaded`.
 * Concurrency across the vPool's vDisks is bounded by a shared Semaphore, and so are its upload buffers.
 *
 * The SCOs of one TLog are put several at a time (SCO_PUTS), in any order; the TLog itself only once all
 * of them are in the backend, so a TLog object there still means every SCO it names is. One SCO at a time,
 * a busy vDisk shipped one put's latency at a time (read, write, fsync, rename, fsync of the directory on
 * the `file://` backend; a round trip to S3) however idle the rest was, and once the write cache is full
 * every write waits for that (docs/performance.md). A store with putFile (`file://`) gets the SCO's file,
 * copied in the kernel, instead of its bytes read into this process.
 */
import fs from 'node:fs/promises';
import type { BlobStore } from '../../backend/types.js';
import { scoKey, tlogKey } from '../formats/backend-layout.js';
import { withRetry } from '../../backend/retry.js';
import type { UploadBuffers } from './upload-buffers.js';
import type { Logger } from '../../../util/log.js';

export interface PendingTlog {
  tlog: number;
  /** The SCOs the TLog names, ascending. */
  scos: number[];
}

export interface UploadSource {
  scoPath(sco: number): string;
  tlogPath(tlog: number): string;
  /**
   * Makes the local files durable (fdatasync). Called before a TLog's objects are put: nothing reaches the
   * backend that a power cut could take from the local disk — else the local restart would number new SCOs
   * and TLogs from what is left and reuse numbers whose objects the backend holds with other content.
   */
  syncLocal(): Promise<void>;
  onUploaded(p: PendingTlog, scoBytes: number): Promise<void>;
}

export class Semaphore {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/** SCOs of one TLog put at the same time (each also takes the shared Semaphore's permit for its put). */
export const SCO_PUTS = 4;

export class Uploader {
  private readonly queue: PendingTlog[] = [];
  private draining: Promise<void> | null = null;
  private stopped = false;
  /** SCOs of the TLog at the head of the queue already uploaded (re-uploading is harmless, skipping saves time). */
  private readonly headDone = new Set<number>();
  /** Delay before the next attempt after a failure. */
  private retryMs = 1000;

  constructor(private readonly vdiskId: string, private readonly backend: BlobStore, private readonly source: UploadSource,
    private readonly sem: Semaphore, private readonly buffers: UploadBuffers, private readonly log: Logger) {}

  enqueue(p: PendingTlog): void {
    this.queue.push(p);
    this.kick();
  }

  private kick(): void {
    if (this.draining !== null || this.stopped) return;
    this.draining = this.drain()
      .then(() => {
        this.retryMs = 1000;
      })
      .catch((err) => {
        // a local file could not be read or synced, a cork could not commit (a disk error, a full disk): log
        // it and try again later rather than stop shipping; 1 s, doubling up to 30 s while it keeps failing
        this.log.error(`upload failed; retrying in ${this.retryMs / 1000} s`, { vdisk: this.vdiskId, error: String(err?.message ?? err) });
        setTimeout(() => this.kick(), this.retryMs).unref();
        this.retryMs = Math.min(30_000, this.retryMs * 2);
      })
      .finally(() => (this.draining = null));
  }

  get backlog(): { scos: number; tlogs: number } {
    let scos = 0;
    for (const p of this.queue) scos += p.scos.length;
    scos -= this.headDone.size;
    return { scos, tlogs: this.queue.length };
  }

  /** Resolves when every queued TLog is in the backend and corked. */
  async waitIdle(): Promise<void> {
    while (this.draining !== null) await this.draining;
  }

  /** Stops after the current upload (the vDisk is being removed). */
  stop(): void {
    this.stopped = true;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.stopped) {
      const p = this.queue[0];
      await this.source.syncLocal();
      if (this.stopped) return;
      let scoBytes = 0;
      const todo = p.scos.filter((sco) => !this.headDone.has(sco));
      await eachLimited(todo, SCO_PUTS, async (sco) => {
        if (this.stopped) return;
        const key = scoKey(this.vdiskId, sco);
        const file = this.source.scoPath(sco);
        let bytes: number;
        if (this.backend.putFile !== undefined) {
          // a file:// backend copies the file in the kernel: the bytes never pass through this process
          bytes = await withRetry(() => this.sem.run(() => this.backend.putFile!(key, file)), {
            what: `upload SCO ${sco} of vDisk ${this.vdiskId}`, log: this.log, cancelled: () => this.stopped,
          });
        } else {
          const data = await this.buffers.read(file); // a reused buffer: see upload-buffers.ts
          try {
            await this.put(key, data, `upload SCO ${sco}`);
          } finally {
            this.buffers.give(data);
          }
          bytes = data.length;
        }
        this.headDone.add(sco);
        scoBytes += bytes;
      });
      if (this.stopped) return;
      const tlog = await fs.readFile(this.source.tlogPath(p.tlog));
      await this.put(tlogKey(this.vdiskId, p.tlog), tlog, `upload TLog ${p.tlog}`);
      if (this.stopped) return;
      await this.source.onUploaded(p, scoBytes);
      this.queue.shift();
      this.headDone.clear();
      this.log.debug('TLog in the backend', { vdisk: this.vdiskId, tlog: p.tlog, scos: p.scos.length });
    }
  }

  private put(key: string, data: Buffer, what: string): Promise<void> {
    return withRetry(() => this.sem.run(() => this.backend.put(key, data)), {
      what: `${what} of vDisk ${this.vdiskId}`, log: this.log, cancelled: () => this.stopped,
    });
  }
}

/**
 * Runs `fn` on every item, at most `limit` at a time. After a failure no new item starts; it rejects with
 * the first failure once the running ones have settled (their buffers given back, nothing left in flight).
 */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let error: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        if (!failed) error = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw error;
}
