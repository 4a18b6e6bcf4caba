/**
 * The ops of the seeded vPool models that check every byte against a reference (test/checkpoint-model.test.ts,
 * test/scrub-model.test.ts): a write, a snapshot, a snapshot delete, a rollback, a clone, a resize and a
 * discard, each done on the vPool and on the reference (`RefDisk`, `RefSnapshots`) with the same draws from
 * the run's rng, in the same order, so a seed replays the same run; and the comparisons of the live vDisks
 * and of their snapshots (read from the backend through the chain) with the reference.
 */
import type { ExecutionContext } from 'ava';
import type { VPool } from '../../volume/types.js';
import type { VDiskImpl } from '../../volume/vdisk/vdisk.js';
import { pattern, type RefDisk, type RefSnapshots } from './ref-disk.js';
import { pointData } from './scrub-check.js';

export const CS = 4096;

export function fail(t: ExecutionContext, msg: string): false {
  t.fail(msg);
  return false;
}

/** Every vDisk of `refs` reads as its reference, size included. */
export async function compareLive(t: ExecutionContext, pool: VPool, refs: Map<string, RefDisk>, where: string): Promise<boolean> {
  for (const [p, ref] of refs) {
    const v = pool.vdisk(p);
    if (v.size !== ref.size) return fail(t, `${where}: size of ${p} is ${v.size}, want ${ref.size}`);
    if (!(await v.read(0, ref.size)).equals(ref.read(0, ref.size))) return fail(t, `${where}: ${p} differs from the reference`);
  }
  return true;
}

/** Every snapshot of `p`, read from the backend through the chain its doc names now. */
export async function compareSnapshots(t: ExecutionContext, pool: VPool, p: string, snaps: RefSnapshots, where: string): Promise<boolean> {
  const v = pool.vdisk(p) as VDiskImpl;
  for (const s of snaps.list(p)) {
    const meta = v.docs.doc.snapshots.find((x) => x.name === s.name);
    if (meta === undefined) return fail(t, `${where}: snapshot ${s.name} of ${p} is gone`);
    const got = await pointData(v.ctx.backend, v.id, v.docs.doc, meta.tlog);
    if (got.size !== s.ref.size) return fail(t, `${where}: snapshot ${s.name} of ${p} has size ${got.size}, want ${s.ref.size}`);
    // only the bytes below the snapshot's size: after a shrink to a size inside a cluster the stored boundary
    // cluster keeps its old bytes past that size (invisible; a later grow zeros them, vdisk.ts zeroPastSize),
    // while the reference zeroed them
    const inSize = (a: number, b: Buffer): Buffer => b.subarray(0, Math.min(CS, s.ref.size - a * CS));
    for (const [a, data] of s.ref.clusters) {
      if (a * CS >= s.ref.size) continue;
      if (!inSize(a, got.clusters.get(a) ?? Buffer.alloc(CS)).equals(inSize(a, data))) return fail(t, `${where}: snapshot ${s.name} of ${p} cluster ${a} differs`);
    }
    for (const a of got.clusters.keys()) {
      if (!s.ref.clusters.has(a) && inSize(a, got.clusters.get(a)!).some((b) => b !== 0)) return fail(t, `${where}: snapshot ${s.name} of ${p} cluster ${a} should be a hole`);
    }
  }
  return true;
}

/** The counters the ops bump (a model may keep more). */
export interface OpCounts {
  writes: number;
  discards: number;
  snapshots: number;
  deletes: number;
  rollbacks: number;
  clones: number;
}

/**
 * The ops on `pool()` (the current vPool: models reopen it) and the references. `r` is the run's rng: every op
 * draws from it exactly as the models did before they shared this code.
 */
export class ModelOps {
  constructor(
    private readonly t: ExecutionContext,
    private readonly pool: () => VPool,
    readonly refs: Map<string, RefDisk>,
    readonly snaps: RefSnapshots,
    private readonly r: () => number,
    private readonly seed: number,
    readonly counts: OpCounts,
  ) {}

  /** Creates each of `paths` with `size` bytes, on the vPool and in the references. */
  async create(paths: string[], size: number): Promise<void> {
    for (const p of paths) {
      await this.pool().createFile(p, 0o644, 0, 0, size);
      this.refs.get(p)!.resize(size);
    }
  }

  /** 1–10 clusters at a random offset (sometimes unaligned, sometimes 77 bytes short). */
  async write(p: string, i: number): Promise<void> {
    const { r } = this;
    const ref = this.refs.get(p)!;
    const n = 1 + Math.floor(r() * 10);
    const off = Math.floor(r() * Math.max(1, ref.size / CS - 2)) * CS + (r() < 0.2 ? Math.floor(r() * CS) : 0);
    const data = pattern(this.seed, i, n * CS - (r() < 0.3 ? 77 : 0));
    await this.pool().vdisk(p).write(off, data);
    ref.write(off, data);
    this.counts.writes++;
  }

  /** Snapshot `s<i>` of `p`. */
  async snapshot(p: string, i: number): Promise<void> {
    await this.pool().snapshots.create(p, `s${i}`);
    this.snaps.take(p, `s${i}`, this.refs.get(p)!);
    this.counts.snapshots++;
  }

  /** Deletes a random snapshot of `p` (it has one); the vPool must answer as the model says. False: failed. */
  async deleteSnapshot(p: string, where: string): Promise<boolean> {
    const list = this.snaps.list(p);
    const s = list[Math.floor(this.r() * list.length)];
    const want = this.snaps.remove(p, s.name);
    const got = await this.pool().snapshots.remove(p, s.name).then(() => 'OK', (e: { code?: string }) => e.code);
    if (got !== want) return fail(this.t, `${where}: delete ${s.name} of ${p}: ${got}, the model says ${want}`);
    if (want === 'OK') this.counts.deletes++;
    return true;
  }

  /** Rolls `p` back to a random snapshot of it (it has one): 'busy' (a cloned snapshot, refused), 'ok', or false (failed). */
  async rollback(p: string, where: string): Promise<'ok' | 'busy' | false> {
    const list = this.snaps.list(p);
    const s = list[Math.floor(this.r() * list.length)];
    const want = this.snaps.rollback(p, s.name);
    const got = await this.pool().snapshots.rollback(p, s.name).then(() => 'OK', (e: { code?: string }) => e.code);
    if (want === 'BUSY') return got === 'BUSY' ? 'busy' : fail(this.t, `${where}: rollback over a cloned snapshot: ${got}`);
    if (got !== 'OK') return fail(this.t, `${where}: rollback of ${p} to ${s.name}: ${got}`);
    this.refs.set(p, want);
    this.counts.rollbacks++;
    return 'ok';
  }

  /** Clones a random snapshot of `p` (it has one) to `/c<i>`. */
  async clone(p: string, i: number): Promise<void> {
    const list = this.snaps.list(p);
    const s = list[Math.floor(this.r() * list.length)];
    const target = `/c${i}`;
    await this.pool().snapshots.clone(p, s.name, target);
    s.clones++;
    this.refs.set(target, s.ref.clone());
    this.counts.clones++;
  }

  /** A new size of 48–144 clusters, half the time inside a cluster. */
  async resize(p: string): Promise<void> {
    const { r } = this;
    const size = Math.floor((48 + r() * 96) * CS + (r() < 0.5 ? r() * CS : 0));
    await this.pool().vdisk(p).resize(size);
    this.refs.get(p)!.resize(size);
  }

  /** A guest TRIM of up to 12 clusters at a random offset (`p` is not empty). */
  async discard(p: string): Promise<void> {
    const { r } = this;
    const ref = this.refs.get(p)!;
    const off = Math.floor(r() * ref.size);
    const len = Math.min(ref.size - off, 1 + Math.floor(r() * 12 * CS));
    await this.pool().vdisk(p).discard(off, len);
    ref.discard(off, len);
    this.counts.discards++;
  }
}
