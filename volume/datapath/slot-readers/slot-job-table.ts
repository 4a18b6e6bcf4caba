/**
 * The job table a slot reader (slot-readers.ts) shares with its worker thread (slot-reader-worker.ts): one
 * row of JOB_WORDS float64 words per run, in a SharedArrayBuffer. Its own file so that the worker loads
 * nothing else of the main thread's side.
 */
export const JOB = { FD: 0, POS: 1, N: 2, TAG: 3, SCO: 4, SLOT: 5, ADDRESS: 6, AT: 7, RESULT: 8 } as const;
/** Float64 words per run: descriptor, byte position, slots, namespace tag, SCO, first slot, first address, scratch offset, result (1 sound, 0 not). */
export const JOB_WORDS = 9;
