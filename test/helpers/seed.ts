/**
 * The seed of a seeded (model-based) test, in one place: `VPOOLFS_SEED=<n>` replays a run, else a fresh
 * random seed. `seeded(t)` also logs it, the way every such test does, and gives the run's PRNG (ref-disk.ts's
 * mulberry32, seeded with exactly that number: a logged seed replays the same draws).
 */
import { rng } from './ref-disk.js';

/** VPOOLFS_SEED when set, else a fresh seed in [0, 2^31). */
export function runSeed(): number {
  return Number(process.env.VPOOLFS_SEED ?? Math.floor(Math.random() * 2 ** 31));
}

export interface Seeded {
  seed: number;
  /** Uniform in [0, 1). */
  rand: () => number;
  /** Uniform integer in [0, n): one draw of rand. */
  int: (n: number) => number;
}

/** The run's seed (logged with how to replay it) and its PRNG. */
export function seeded(t: { log: (...values: unknown[]) => void }): Seeded {
  const seed = runSeed();
  t.log(`seed ${seed} (VPOOLFS_SEED=${seed} replays this run)`);
  const rand = rng(seed);
  return { seed, rand, int: (n) => Math.floor(rand() * n) };
}
