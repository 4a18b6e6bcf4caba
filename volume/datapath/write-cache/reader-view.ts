/**
 * What another thread needs to serve reads of one vDisk from its write cache without the main thread (the
 * kernel engine's reader threads, fuse/kernel/fast-read.ts): the cluster map's pages (SharedArrayBuffers,
 * cluster-map.ts), the descriptors of its local SCO files (process-wide: a worker can pread them), its
 * namespace tag and size, and a sequence lock. The volume layer knows nothing of FUSE: it tells whoever
 * subscribed (a `ViewListener`) each change as it happens, synchronously, and the engine forwards it.
 *
 * The control block `ctl` (Int32Array on a SharedArrayBuffer):
 *   SEQ   a seqlock: odd while the main thread changes something a reader could be relying on in a way the
 *         slot check cannot see — a descriptor closed (evicted SCO, vDisk closed: the number may be reused
 *         at once), the map rewritten (rollback, shrink, scrub apply, replay), the size changed;
 *   FLAGS CLOSED once the vDisk is closed (nothing is served any more);
 *   SIZE_LO, SIZE_HI the size in bytes (written only inside a change, so read consistently under SEQ);
 *   SERVED the READs the readers answered (the scrubber backs off while the guest reads: util/io-activity.ts).
 * Each change ends with a `{seq}` message carrying the new even value, after the messages of what it
 * changed: a reader that has processed messages up to seq S and reads S from SEQ before and after its
 * preads knows its copy of the fd table, pages and size was current for the whole read (fast-read.ts).
 *
 * Plain writes and discards do not take the seqlock: they only change map entries, which a reader reads as
 * old or new (either is a valid answer to a read concurrent with them), and every slot it reads is
 * verified (sco-format.ts: magic, crc32, namespace tag, SCO number, slot, address). Pages are announced as
 * they are created, before the write that created them is acknowledged: a read issued after the ack sees
 * them. Map entries are plain stores into shared memory, made before the reply's write(2) to /dev/fuse; the
 * reader loads them after its read(2) of a request the kernel sent after that reply: the system calls
 * between (and x86's store order) make them visible — JavaScript's memory model alone would want an
 * Atomics.store after them, which the write path does not pay.
 */

/** Indexes of the control block. */
export const VIEW = { SEQ: 0, FLAGS: 1, SIZE_LO: 2, SIZE_HI: 3, SERVED: 4, WORDS: 5 } as const;
export const VIEW_CLOSED = 1;

/** A change, as told to the listeners (and forwarded to the reader threads as it is: structured-clonable). */
export type ViewMessage =
  | { v: number; page: number; words: Uint32Array | null }
  | { v: number; sco: number; fd: number | null }
  | { v: number; seq: number };

/** The whole view, for a subscriber that starts now; later changes come as ViewMessages. */
export interface ViewSnapshot {
  v: number;
  ctl: Int32Array;
  tag: number;
  pages: Array<[number, Uint32Array]>;
  fds: Array<[number, number]>;
  seq: number;
}

export type ViewListener = (m: ViewMessage) => void;

let nextViewId = 1;

export class ReaderView {
  readonly id = nextViewId++;
  readonly ctl = new Int32Array(new SharedArrayBuffer(VIEW.WORDS * 4));
  private readonly listeners = new Set<ViewListener>();
  private depth = 0;

  constructor(
    readonly tag: number,
    private readonly state: { pages(): Iterable<[number, Uint32Array]>; fds(): Iterable<[number, number]>; size(): number },
  ) {}

  /** The whole view now, and `fn` told every change from here on; returns it with the way to stop. */
  subscribe(fn: ViewListener): { snapshot: ViewSnapshot; stop: () => void } {
    this.listeners.add(fn);
    this.writeSize();
    return {
      snapshot: { v: this.id, ctl: this.ctl, tag: this.tag, pages: [...this.state.pages()], fds: [...this.state.fds()], seq: Atomics.load(this.ctl, VIEW.SEQ) },
      stop: () => this.listeners.delete(fn),
    };
  }

  get subscribed(): boolean {
    return this.listeners.size > 0;
  }

  /**
   * Runs `fn` (synchronous) with the seqlock held: readers that overlap it fall back to the main thread.
   * Nests (the outermost call releases it). The size is republished at the end.
   */
  change<T>(fn: () => T): T {
    if (this.depth++ === 0) Atomics.add(this.ctl, VIEW.SEQ, 1);
    try {
      return fn();
    } finally {
      if (--this.depth === 0) {
        this.writeSize();
        const seq = Atomics.add(this.ctl, VIEW.SEQ, 1) + 1;
        this.tell({ v: this.id, seq });
      }
    }
  }

  /** The vDisk closed: nothing is served from here on (its descriptors are being closed). */
  close(): void {
    this.change(() => Atomics.or(this.ctl, VIEW.FLAGS, VIEW_CLOSED));
  }

  /** A map page was created or replaced (`words`) or dropped (null). */
  pageChanged(page: number, words: Uint32Array | null): void {
    if (this.listeners.size > 0) this.tell({ v: this.id, page, words });
  }

  /** SCO `sco` has descriptor `fd` now, or none (null: its descriptor is being closed, inside a change). */
  fdChanged(sco: number, fd: number | null): void {
    if (this.listeners.size > 0) this.tell({ v: this.id, sco, fd });
  }

  private writeSize(): void {
    const size = this.state.size();
    Atomics.store(this.ctl, VIEW.SIZE_LO, size % 0x100000000 | 0);
    Atomics.store(this.ctl, VIEW.SIZE_HI, Math.floor(size / 0x100000000));
  }

  private tell(m: ViewMessage): void {
    for (const fn of this.listeners) fn(m);
  }
}

/** The size a view's control block holds. */
export function viewSize(ctl: Int32Array): number {
  return (ctl[VIEW.SIZE_LO] >>> 0) + ctl[VIEW.SIZE_HI] * 0x100000000;
}
