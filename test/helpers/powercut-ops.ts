/**
 * The operations of the power-cut model test and what may survive them.
 *
 * PcOps(seed) yields the same sequence in the writer child (powercut-writer.ts) and in the checker: 4 KiB-aligned
 * writes, unaligned ones (1 byte to 9000), writes that grow the vDisk, and fdatasyncs. The writer's ack log
 * (ack-log.ts: one write(2) a line, on the normal disk) says what was acknowledged:
 *
 *   w N        write N returned
 *   s N        fdatasync N returned (it covers every op before N)
 *   x N        an extra fdatasync after op N returned (covers N too; the writer's probe after an error)
 *   e N CODE   op N failed;  xe N CODE  the extra fdatasync after op N failed
 *   cut        written by the test just BEFORE the power cut (O_APPEND: one line, in order); what follows it
 *              may have completed after the cut and counts only as "may have landed"
 *
 * survivors() turns the log into the promise of DESIGN §4 for a power cut: every cluster holds the content it had
 * at the last completed fsync, or the content of a later write to it that may have landed (acknowledged or in
 * flight), nothing else; the size is one the vDisk had from that fsync on, or one a growing write after it passed
 * on its way: the kernel may send one write(2) as several WRITE requests (split at page or folio boundaries, or
 * where copying from the writer's buffer faulted), each growing the size to its own end, and a cut between two
 * leaves the size of the first (seen in CI: a 55 KiB write cut at the end of its first page).
 */
import { createHash } from 'node:crypto';
import { pattern, RefDisk, rng } from './ref-disk.js';

const CS = 4096;
/** The vDisk starts at this size (the test creates it, the writer fsyncs before its first op). */
export const PC_BASE_SIZE = 8 * 2 ** 20;
/** Growing writes stop once the vDisk reaches this size. */
export const PC_MAX_SIZE = 24 * 2 ** 20;

export type PcOp = { kind: 'write'; offset: number; data: Buffer } | { kind: 'sync' };

/** The seeded op sequence; stateful (growing writes depend on the size so far), so always walked from op 0. */
export class PcOps {
  private readonly r: () => number;
  size = PC_BASE_SIZE;
  n = 0;

  constructor(readonly seed: number) {
    this.r = rng(seed);
  }

  next(): PcOp {
    const r = this.r;
    const n = this.n++;
    const k = r();
    if (k < 0.07) return { kind: 'sync' };
    let offset: number;
    let len: number;
    if (k < 0.15 && this.size < PC_MAX_SIZE) {
      // grows the vDisk: starts a little before the end, reaches up to 256 KiB past it
      len = 1 + Math.floor(r() * 65536);
      offset = this.size - 8192 + Math.floor(r() * (8192 + 196608));
    } else if (k < 0.58) {
      len = CS * (1 + Math.floor(r() * 16));
      offset = CS * Math.floor(r() * ((this.size - len) / CS));
    } else {
      len = 1 + Math.floor(r() * 9000);
      offset = Math.floor(r() * (this.size - len));
    }
    this.size = Math.max(this.size, offset + len);
    return { kind: 'write', offset, data: pattern(this.seed, n, len) };
  }
}

export interface AckLog {
  /** Highest op index covered by a completed fsync before the first error (-1: only the initial fsync). */
  synced: number;
  /** Highest op index that may have reached the vDisk (the last one logged, plus one in flight). */
  last: number;
  /** Op index of the first error (-1: none). */
  firstError: number;
}

/** `everyAck`: a sync DTL promises every acknowledged write, not only the fsynced ones. */
export function parseAckLog(lines: string[], everyAck = false): AckLog {
  let synced = -1;
  let seen = -1;
  let firstError = -1;
  let afterCut = false;
  for (const l of lines) {
    const [kind, nArg] = l.split(' ');
    if (kind === 'cut') {
      afterCut = true;
      continue;
    }
    const n = Number(nArg);
    seen = Math.max(seen, n);
    if ((kind === 'e' || kind === 'xe') && firstError < 0) firstError = n;
    // an fsync that returned after the cut began may have straddled it: the kernel can report success for an
    // fdatasync in flight when the filesystem went down (measured: helpers/powercut.ts); a real power cut
    // leaves no one to acknowledge anything, so only what was logged before the marker counts
    if (afterCut) continue;
    if (firstError >= 0) continue; // a "successful" fsync after an error is judged elsewhere (powercut-vdisk.test.ts)
    if (kind === 's') synced = Math.max(synced, n - 1);
    if (everyAck && kind === 'w') synced = Math.max(synced, n);
    if (kind === 'x') synced = Math.max(synced, n);
  }
  return { synced, last: seen + 1, firstError };
}

export interface Survivors {
  /** Per cluster address, the contents it may hold (the first one: as of the last fsync). */
  allowed: Map<number, Buffer[]>;
  /** Sizes the vDisk may have. */
  sizes: Set<number>;
  /** Sizes a growing write may have left when only its first WRITE requests landed: lo < size ≤ hi. */
  partialSizes: Array<[lo: number, hi: number]>;
  /** sha1 of every content a cluster ever had → the op that wrote it (to name a stale or foreign content). */
  origin: Map<string, number>;
  /** The size as of the last fsync. */
  syncedSize: number;
  maxSize: number;
  /** The last op covered by a completed fsync. */
  synced: number;
}

export const sha1 = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex');

/** What the vDisk may hold after a cut, given the seed and the ack log. */
export function survivors(seed: number, log: AckLog): Survivors {
  const ops = new PcOps(seed);
  const ref = new RefDisk();
  ref.resize(PC_BASE_SIZE);
  const origin = new Map<string, number>([[sha1(Buffer.alloc(CS)), -1]]);
  /** Applies op n to the reference; returns the clusters it touched and where it began (-1: an fsync). */
  const apply = (n: number): { touched: number[]; offset: number } => {
    const op = ops.next();
    if (op.kind !== 'write') return { touched: [], offset: -1 };
    ref.write(op.offset, op.data);
    const touched: number[] = [];
    for (let a = Math.floor(op.offset / CS); a <= Math.floor((op.offset + op.data.length - 1) / CS); a++) {
      touched.push(a);
      const h = sha1(ref.clusters.get(a)!);
      if (!origin.has(h)) origin.set(h, n);
    }
    return { touched, offset: op.offset };
  };
  for (let n = 0; n <= log.synced; n++) apply(n);
  const allowed = new Map<number, Buffer[]>();
  const syncedSize = ref.size;
  for (let a = 0; a < Math.ceil(PC_MAX_SIZE / CS) + 64; a++) allowed.set(a, [Buffer.from(ref.clusters.get(a) ?? Buffer.alloc(CS))]);
  const sizes = new Set([ref.size]);
  const partialSizes: Array<[number, number]> = [];
  for (let n = log.synced + 1; n <= log.last; n++) {
    const before = ref.size;
    const { touched, offset } = apply(n);
    if (ref.size > before) partialSizes.push([Math.max(before, offset), ref.size]);
    for (const a of touched) {
      const l = allowed.get(a) ?? [Buffer.alloc(CS)];
      l.push(Buffer.from(ref.clusters.get(a)!));
      allowed.set(a, l);
    }
    sizes.add(ref.size);
  }
  return { allowed, sizes, partialSizes, origin, syncedSize, maxSize: ref.size, synced: log.synced };
}

/**
 * Compares what the vDisk holds (`got`: its whole content, read after the restart) with the survivors.
 * Returns one line per problem, at most `limit` (empty: all good).
 */
export function checkSurvivors(s: Survivors, got: Buffer, limit = 12): string[] {
  const bad: string[] = [];
  if (!s.sizes.has(got.length) && !s.partialSizes.some(([lo, hi]) => got.length > lo && got.length <= hi)) {
    bad.push(`size ${got.length}: expected one of the sizes from the last fsync on (${s.syncedSize} at that fsync, ${[...s.sizes].sort((a, b) => a - b).slice(0, 8).join(', ')}…)`);
  }
  for (let a = 0; a * CS < got.length && bad.length < limit; a++) {
    const chunk = got.subarray(a * CS, Math.min(got.length, (a + 1) * CS));
    const cands = s.allowed.get(a) ?? [Buffer.alloc(CS)];
    if (cands.some((c) => c.subarray(0, chunk.length).equals(chunk))) continue;
    const full = Buffer.alloc(CS);
    chunk.copy(full);
    const from = s.origin.get(sha1(full));
    const what = from === undefined ? 'bytes no op ever wrote there (nor zeros)'
      : from === -1 ? 'zeros'
      : from <= s.synced ? `the content after op ${from}, older than the last fsync (op ${s.synced})` : `the content after op ${from}, which was never issued`;
    bad.push(`cluster ${a} (offset ${a * CS}): holds ${what} [${chunk.subarray(0, 8).toString('hex')}…]; expected the content as of the last fsync [${cands[0].subarray(0, 8).toString('hex')}…] or one of ${cands.length - 1} later writes`);
  }
  return bad;
}
