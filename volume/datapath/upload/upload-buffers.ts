/**
 * The buffers the uploader reads SCOs into before putting them, reused. A fresh 4 MiB buffer per SCO
 * (fs.readFile) is external memory to V8, and shipping a few SCOs a second made it run a full mark-compact
 * of the main thread every 50–200 ms (`--trace-gc`: "GC in old space requested"), ~10% of the daemon's main
 * thread during 4 KiB random writes (docs/performance.md). A buffer goes back once the put of its data has
 * resolved: every BlobStore is done with the data by then (types.ts; the mem store copies, the S3 store
 * resolves once the SDK has sent it, the file store once it is written).
 *
 * The bound on buffers out is per vPool (one UploadBuffers in its VDiskContext), not per process: a put that
 * never settles (a backend paused for good, a vPool dropped by a power-cut test while a put waited) keeps its
 * buffer, and with a process-wide bound a few such puts of one vPool stopped every other vPool's uploads in
 * the process (seen: four in-process tests of one file, each pausing its backend, hung together). The free
 * list stays shared: a buffer given back is anyone's.
 */
import fs from 'node:fs/promises';

/** Free buffers kept: one per upload in flight is taken. */
const KEEP = 8;
/**
 * Buffers out at once, over every vDisk of a vPool: a vDisk puts up to SCO_PUTS SCOs at a time (uploader.ts),
 * each read before it waits for the shared semaphore's permit; without a bound, many vDisks shipping at once
 * would each hold that many SCOs in memory while waiting.
 */
export const MAX_OUT = 8;
/** The smallest buffer made: an SCO of the default size fits (larger ones get a buffer of their own size). */
const MIN_SIZE = 4 << 20;

const free: Buffer[] = [];

/** The upload buffers of one vPool: at most MAX_OUT out at once. */
export class UploadBuffers {
  private out = 0;
  private readonly waiting: Array<() => void> = [];

  /** Buffers out right now (tests). */
  get held(): number {
    return this.out;
  }

  /** The whole file `file`, in a pooled buffer (a view of its length). Give it back with give(). */
  async read(file: string): Promise<Buffer> {
    if (this.out < MAX_OUT) this.out++;
    else await new Promise<void>((r) => this.waiting.push(r)); // handed its turn by release(): `out` is unchanged
    let fh;
    try {
      fh = await fs.open(file, 'r');
    } catch (err) {
      this.release();
      throw err;
    }
    try {
      const size = (await fh.stat()).size;
      let b = free.pop();
      if (b === undefined || b.length < size) b = Buffer.allocUnsafeSlow(Math.max(size, MIN_SIZE));
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(b, got, size - got, got);
        if (bytesRead === 0) break; // shorter than it was a moment ago: put what is there, as readFile would
        got += bytesRead;
      }
      return b.subarray(0, got);
    } catch (err) {
      this.release();
      throw err;
    } finally {
      await fh.close();
    }
  }

  /** `b` (from read) is no longer used by anyone: its put has settled. */
  give(b: Buffer): void {
    this.release();
    if (free.length < KEEP && b.byteOffset === 0) free.push(Buffer.from(b.buffer, 0, b.buffer.byteLength));
  }

  /** One buffer fewer out: its turn goes to the next reader waiting, if any. */
  private release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.out--;
  }
}
