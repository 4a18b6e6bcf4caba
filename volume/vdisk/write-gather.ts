/**
 * Gathering the writes of one moment: inside gatherWrites(fn), VDisk.write does not take the vDisk's lock
 * itself; each vDisk keeps the writes it got, and when fn returns it takes its lock once for all of them,
 * in the order they came (vdisk-write.ts writeManyLocked: the runs of whole-cluster writes inside the size
 * go to the write cache with one writev per SCO instead of one each). The kernel FUSE engine gathers the
 * WRITEs of one event-loop turn (fuse/kernel/session.ts): at depth several arrive per turn, and the SCO
 * writev was a quarter of the main thread's time.
 *
 * Nothing else is called inside fn (the caller makes sure: the engine runs only WRITEs in it), so the
 * writes reach the lock's queue at the end of fn in the same order as if each had taken it when called.
 */

/** A vDisk that holds writes gathered during gatherWrites and takes its lock for them afterwards. */
export interface Gatherer {
  submitGathered(): void;
}

let gathering: Set<Gatherer> | null = null;

/** Runs `fn`; the writes it makes are gathered per vDisk and submitted together when it returns. */
export function gatherWrites(fn: () => void): void {
  if (gathering !== null) return fn();
  const set = new Set<Gatherer>();
  gathering = set;
  try {
    fn();
  } finally {
    gathering = null;
    for (const g of set) g.submitGathered();
  }
}

/** True when a gather is under way: `g` then keeps the write and is submitted at its end. */
export function joinGather(g: Gatherer): boolean {
  if (gathering === null) return false;
  gathering.add(g);
  return true;
}
