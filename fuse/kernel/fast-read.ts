/**
 * READs served in a reader thread (reader.ts), without the main thread, when every cluster of the request
 * is unwritten (zeros) or in the vDisk's local write cache: the data plane's read side in the readers.
 *
 * The main thread publishes, per open vDisk, what this needs (volume/datapath/write-cache/reader-view.ts): the cluster
 * map's pages (shared memory), the descriptors of its local SCO files, its namespace tag, size and a
 * seqlock; and, per file handle, which vDisk it reads (session.ts, on OPEN/CREATE before the reply; RELEASE).
 * All of it arrives as messages on this reader's port, drained before each request, so anything published
 * before the kernel got a reply (a page a write created, an open) is known when a later request comes.
 *
 * Optimistic and verified: the map is read, the slots are read with one readv per run of consecutive slots
 * (headers to scratch, data straight into the reply), and every slot is checked as the main thread's read
 * path does (magic, crc32, namespace tag, SCO number, slot, address: sco-format.ts). The answer is written
 * only if the vDisk's seqlock was even and unchanged from before the map lookup to after the reads, and this
 * reader had processed every change up to that value (no descriptor it used was closed meanwhile, the map
 * was not rewritten, the size did not change). Anything it cannot prove — a handle it does not know, a
 * clone's inherited cluster, a SCO not in the write cache (the read cache, the backend), a slot that fails
 * its check, a change during the read, a short read — goes to the main thread exactly as before.
 */
import fs from 'node:fs';
import { checkSlotParts, SLOT_HEADER, SLOT_SIZE } from '../../volume/datapath/formats/sco-format.js';
import { VIEW, VIEW_CLOSED, viewSize, type ViewMessage, type ViewSnapshot } from '../../volume/datapath/write-cache/reader-view.js';
import { CLUSTER_SIZE } from '../../volume/types.js';
import { SIZE } from './protocol.js';

/** The largest READ served here (bigger ones go to the main thread, whose read path reads runs in parallel). */
export const FAST_READ_MAX = 128 * 1024;
const MAX_CLUSTERS = FAST_READ_MAX / CLUSTER_SIZE + 1;
const PAGE_SHIFT = 10;
const PAGE_MASK = 1023;
const H = SIZE.IN_HEADER;
const OH = SIZE.OUT_HEADER;

/** What reaches a reader on its port besides view changes. */
export type ReaderMessage =
  | ViewMessage
  | { snapshot: ViewSnapshot }
  | { fh: number; view: number }
  | { drop: number };

interface View {
  ctl: Int32Array;
  tag: number;
  pages: Map<number, Uint32Array>;
  fds: Map<number, number>;
  /** The seqlock value of the last change message processed. */
  known: number;
}

export class FastReads {
  private readonly views = new Map<number, View>();
  private readonly byFh = new Map<number, View>();
  // scratch: slot headers of one request, a cluster read in part, the reply (header + data)
  private readonly headers = Buffer.alloc(MAX_CLUSTERS * SLOT_HEADER);
  private readonly partial = Buffer.alloc(CLUSTER_SIZE);
  private readonly last = Buffer.alloc(CLUSTER_SIZE);
  private readonly reply = Buffer.alloc(OH + FAST_READ_MAX);

  /** A message from the main thread. */
  apply(m: ReaderMessage): void {
    if ('snapshot' in m) {
      const s = m.snapshot;
      this.views.set(s.v, { ctl: s.ctl, tag: s.tag, pages: new Map(s.pages), fds: new Map(s.fds), known: s.seq });
    } else if ('fh' in m) {
      const v = m.view === 0 ? undefined : this.views.get(m.view);
      if (v === undefined) this.byFh.delete(m.fh);
      else this.byFh.set(m.fh, v);
    } else if ('drop' in m) {
      const v = this.views.get(m.drop);
      this.views.delete(m.drop);
      for (const [fh, w] of this.byFh) if (w === v) this.byFh.delete(fh);
    } else {
      const v = this.views.get(m.v);
      if (v === undefined) return;
      if ('seq' in m) v.known = m.seq;
      else if ('page' in m) {
        if (m.words === null) v.pages.delete(m.page);
        else v.pages.set(m.page, m.words);
      } else if (m.fd === null) v.fds.delete(m.sco);
      else v.fds.set(m.sco, m.fd);
    }
  }

  /**
   * Tries to answer the READ in `req` on `dev` (/dev/fuse). True when answered here (or the kernel no longer
   * wanted it); false when the main thread must handle it (nothing was written).
   */
  serve(req: Buffer, dev: number): boolean {
    if (req.length < H + 24) return false;
    const fh = req.readUInt32LE(H) + req.readUInt32LE(H + 4) * 0x100000000;
    const v = this.byFh.get(fh);
    if (v === undefined) return false;
    const offset = req.readUInt32LE(H + 8) + req.readUInt32LE(H + 12) * 0x100000000;
    const want = req.readUInt32LE(H + 16);
    if (want === 0 || want > FAST_READ_MAX) return false;
    const { ctl } = v;
    const seq = Atomics.load(ctl, VIEW.SEQ);
    if ((seq & 1) !== 0 || seq !== v.known || (Atomics.load(ctl, VIEW.FLAGS) & VIEW_CLOSED) !== 0) return false;
    const size = viewSize(ctl);
    const n = offset >= size ? 0 : Math.min(want, size - offset);
    const out = this.reply.subarray(OH, OH + n);
    if (n > 0 && !this.fill(v, out, offset)) return false;
    if (Atomics.load(ctl, VIEW.SEQ) !== seq) return false; // a descriptor closed, the map rewritten, the size changed
    const reply = this.reply.subarray(0, OH + n);
    reply.writeUInt32LE(OH + n, 0);
    reply.writeInt32LE(0, 4);
    req.copy(reply, 8, 8, 16); // the request's unique
    Atomics.add(ctl, VIEW.SERVED, 1); // guest I/O, for the scrubber's back-off (util/io-activity.ts)
    try {
      fs.writeSync(dev, reply);
    } catch {
      // ENOENT: interrupted meanwhile, the kernel no longer waits for it; ENODEV: unmounted
    }
    return true;
  }

  /** Fills `out` with the bytes at `offset`: holes with zeros, mapped clusters from verified local slots. */
  private fill(v: View, out: Buffer, offset: number): boolean {
    const end = offset + out.length;
    const last = Math.floor((end - 1) / CLUSTER_SIZE);
    let h = 0;
    for (let a = Math.floor(offset / CLUSTER_SIZE); a <= last;) {
      const page = v.pages.get(Math.floor(a / 1024));
      const i = (a & PAGE_MASK) * 2;
      const sco = page === undefined ? 0 : page[i];
      const cStart = a * CLUSTER_SIZE;
      if (sco === 0) {
        out.fill(0, Math.max(offset, cStart) - offset, Math.min(end, cStart + CLUSTER_SIZE) - offset);
        a++;
        continue;
      }
      const w1 = page![i + 1];
      if (w1 >>> 16 !== 0) return false; // a clone's cluster of an ancestor (or flags): the main thread
      const fd = v.fds.get(sco);
      if (fd === undefined) return false; // not in the write cache
      // the run of consecutive slots of this SCO
      let k = 1;
      while (a + k <= last) {
        const b = a + k;
        const p = (b >>> PAGE_SHIFT) === (a >>> PAGE_SHIFT) ? page! : v.pages.get(Math.floor(b / 1024));
        if (p === undefined) break;
        const j = (b & PAGE_MASK) * 2;
        if (p[j] !== sco || p[j + 1] !== w1 + k) break;
        k++;
      }
      const slot = w1 & 0xffff;
      const iov: Buffer[] = new Array(k * 2);
      for (let x = 0; x < k; x++) {
        const c = (a + x) * CLUSTER_SIZE;
        iov[x * 2] = this.headers.subarray((h + x) * SLOT_HEADER, (h + x + 1) * SLOT_HEADER);
        // a partial cluster can only be the first or the last of the request: each has the scratch to itself
        iov[x * 2 + 1] = c >= offset && c + CLUSTER_SIZE <= end ? out.subarray(c - offset, c - offset + CLUSTER_SIZE) : c < offset ? this.partial : this.last;
      }
      let got: number;
      try {
        got = fs.readvSync(fd, iov, slot * SLOT_SIZE);
      } catch {
        return false;
      }
      if (got !== k * SLOT_SIZE) return false;
      for (let x = 0; x < k; x++) {
        if (checkSlotParts(iov[x * 2], 0, iov[x * 2 + 1], v.tag, sco, slot + x, a + x) !== null) return false;
      }
      for (let x = 0; x < k; x++) {
        const data = iov[x * 2 + 1];
        if (data === this.partial || data === this.last) {
          const c = (a + x) * CLUSTER_SIZE;
          const from = Math.max(offset, c);
          const to = Math.min(end, c + CLUSTER_SIZE);
          data.copy(out, from - offset, from - c, to - c);
        }
      }
      h += k;
      a += k;
    }
    return true;
  }
}
