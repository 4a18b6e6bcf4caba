/**
 * The seeded model of the policy-update tests (test/rekey-model.test.ts, test/move-model.test.ts,
 * test/policy-rotate-move.test.ts): seedModel() makes /a and /b and runs the first ops; random
 * writes, reads checked against a plain reference, snapshots, clones of snapshots, snapshot deletes and
 * scrubs on an in-process vPool; checkAll() reads every byte of every vDisk and of every snapshot (through a
 * clone of it); dieThenFinish() runs a policy job that dies at a checkpoint, then again to the end, with random
 * ops going on all the while.
 */
import type { VPool } from '../../volume/types.js';
import { RefDisk } from './ref-disk.js';
import { pattern } from './vpool.js';

export { rng } from './ref-disk.js';

export interface Model {
  disks: Map<string, RefDisk>;
  /** vDisk path → snapshot name → the reference as of that snapshot. */
  snaps: Map<string, Map<string, RefDisk>>;
  n: number;
}

export function copyRef(r: RefDisk): RefDisk {
  const c = new RefDisk();
  c.resize(r.size);
  for (const [a, buf] of r.clusters) c.clusters.set(a, Buffer.from(buf));
  return c;
}

/** One random op on the vPool and the model; reads are checked against the reference. */
export async function randomOp(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void }, pool: VPool, m: Model, rand: () => number, scrub: boolean): Promise<void> {
  const paths = [...m.disks.keys()];
  const p = paths[Math.floor(rand() * paths.length)];
  const ref = m.disks.get(p)!;
  const r = rand();
  if (r < 0.5) {
    const off = Math.floor(rand() * 200) * 1024;
    const len = 1 + Math.floor(rand() * 40_000);
    const data = pattern(Math.floor(rand() * 2 ** 31), len);
    await pool.vdisk(p).write(off, data);
    ref.write(off, data);
  } else if (r < 0.7) {
    const off = Math.floor(rand() * ref.size);
    const len = Math.min(ref.size - off, 1 + Math.floor(rand() * 60_000));
    const got = await pool.vdisk(p).read(off, len);
    t.true(got.equals(ref.read(off, len)), `${p} [${off}, +${len}) reads as the reference`);
  } else if (r < 0.82) {
    const name = `s${++m.n}`;
    await pool.snapshots.create(p, name);
    m.snaps.get(p)!.set(name, copyRef(ref));
  } else if (r < 0.9) {
    const names = [...m.snaps.get(p)!.keys()];
    if (names.length === 0 || m.disks.size > 10) return;
    const name = names[Math.floor(rand() * names.length)];
    const target = `/c${++m.n}`;
    await pool.snapshots.clone(p, name, target);
    m.disks.set(target, copyRef(m.snaps.get(p)!.get(name)!));
    m.snaps.set(target, new Map());
  } else if (r < 0.95) {
    const names = [...m.snaps.get(p)!.keys()];
    if (names.length < 2) return;
    const name = names[Math.floor(rand() * names.length)];
    try {
      await pool.snapshots.remove(p, name);
      m.snaps.get(p)!.delete(name);
    } catch (err) {
      if (!(err as { code?: string }).code?.includes('BUSY')) throw err; // a snapshot with clones stays
    }
  } else if (scrub) {
    await pool.scrub.scrub(p);
  }
}

/**
 * The common start of the policy-update models: vDisks `/a` and `/b` (256 KiB each) created on `pool` and in
 * `m`, then `ops` random ops (scrubs included).
 */
export async function seedModel(t: Parameters<typeof randomOp>[0], pool: VPool, m: Model, rand: () => number, ops: number): Promise<void> {
  for (const p of ['/a', '/b']) {
    await pool.createFile(p, 0o644, 0, 0, 256 * 1024);
    const r = new RefDisk();
    r.resize(256 * 1024);
    m.disks.set(p, r);
    m.snaps.set(p, new Map());
  }
  for (let i = 0; i < ops; i++) await randomOp(t, pool, m, rand, true);
}

export async function checkAll(t: { true: (v: boolean, m?: string) => void }, pool: VPool, m: Model): Promise<number> {
  let bytes = 0;
  for (const [p, ref] of m.disks) {
    const v = pool.vdisk(p);
    t.true(v.size === ref.size, `${p}: size ${v.size}, reference ${ref.size}`);
    t.true((await v.read(0, ref.size)).equals(ref.read(0, ref.size)), `${p}: every byte`);
    bytes += ref.size;
    for (const [name, sref] of m.snaps.get(p)!) {
      const target = `/verify-${++m.n}`;
      await pool.snapshots.clone(p, name, target);
      const c = pool.vdisk(target);
      t.true(c.size === sref.size && (await c.read(0, sref.size)).equals(sref.read(0, sref.size)), `${p}@${name}: every byte`);
      bytes += sref.size;
    }
  }
  return bytes;
}

type ModelT = Parameters<typeof randomOp>[0];

/**
 * Runs `job` twice while random ops go on (at least `ops` of them): the first run must die (its checkpoint
 * throws), the second is returned, whatever its state. `ops` is how many random ops ran meanwhile.
 */
export async function dieThenFinish<S extends { state: string; error?: string | null }>(
  t: ModelT & { is: (a: unknown, b: unknown, m?: string) => void },
  pool: VPool,
  m: Model,
  rand: () => number,
  job: { start(): Promise<S> },
  ops: number,
): Promise<{ first: S; last: S; ops: number }> {
  let running = true;
  const io = (async () => {
    let n = 0;
    while (running || n < ops) {
      await randomOp(t, pool, m, rand, true);
      n++;
    }
    return n;
  })();
  const first = await job.start();
  t.is(first.state, 'failed', 'the job died at its checkpoint');
  let last: S;
  try {
    last = await job.start();
  } finally {
    running = false;
  }
  return { first, last, ops: await io };
}
