/**
 * Counters of a kernel-engine session, in a SharedArrayBuffer so that the reader threads and the main
 * thread count without messages: requests by opcode (as read from /dev/fuse), the GETXATTRs answered in a
 * reader (non-`user.*` names: the kernel's security.capability probe), the READs answered in a reader
 * (fast-read.ts) and those handed to the main thread, the WRITEs whose crcs a reader computed
 * (write-crcs.ts), the WRITEs handed to the volume together (session.ts), interrupts, writes by size.
 * Logged when the session ends ("fuse kernel session stats"), which is how tests look at them.
 */
import { knownCrcsUsed } from '../../volume/datapath/write-cache/known-crcs.js';
import { MAX_WRITE, Op } from './protocol.js';

/** Slots 0..63: requests by opcode (63: any opcode ≥ 63). Then the named slots below. */
export const C = {
  OTHER_OPCODE: 63,
  FOREIGN_GETXATTR: 64,
  INTERRUPTS: 65,
  WRITES_FULL: 66,
  WRITES_SMALL: 67,
  WRITE_MAX: 68,
  REPLIES_DROPPED: 69,
  UNKNOWN_OPCODE: 70,
  /** FUSE_NOTIFY_INVAL_INODE accepted by the kernel. */
  INVALIDATIONS: 71,
  /** READs answered in a reader thread (fast-read.ts), and READs it handed to the main thread. */
  FAST_READS: 72,
  READS_TO_MAIN: 73,
  /** WRITEs whose whole clusters' crc32 a reader computed (write-crcs.ts). */
  WRITE_CRCS: 74,
  /** Flushes that handed two or more WRITEs to the volume together, and those WRITEs (session.ts). */
  WRITE_GATHERS: 75,
  WRITES_GATHERED: 76,
  /** Requests the readers posted to the main thread (incremented before each postMessage): what the main thread has not taken yet says whether more WRITEs follow in this turn. */
  POSTED: 77,
  SLOTS: 78,
} as const;

export function newCounters(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(C.SLOTS * 4));
}

export function countRequest(c: Int32Array, opcode: number): void {
  Atomics.add(c, opcode < C.OTHER_OPCODE ? opcode : C.OTHER_OPCODE, 1);
}

export function countWrite(c: Int32Array, size: number): void {
  Atomics.add(c, size === MAX_WRITE ? C.WRITES_FULL : C.WRITES_SMALL, 1);
  if (size > Atomics.load(c, C.WRITE_MAX)) Atomics.store(c, C.WRITE_MAX, size);
}

const NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));

export function opName(opcode: number): string {
  return NAMES.get(opcode) ?? `OP_${opcode}`;
}

/** A plain object for the log: non-zero request counts by name, and the named counters. */
export function summary(c: Int32Array): Record<string, unknown> {
  const requests: Record<string, number> = {};
  for (let i = 0; i < C.OTHER_OPCODE; i++) if (c[i] > 0) requests[opName(i)] = c[i];
  if (c[C.OTHER_OPCODE] > 0) requests.other = c[C.OTHER_OPCODE];
  return {
    requests,
    foreignGetxattr: c[C.FOREIGN_GETXATTR],
    interrupts: c[C.INTERRUPTS],
    writes: { fullMaxWrite: c[C.WRITES_FULL], smaller: c[C.WRITES_SMALL], largestBytes: c[C.WRITE_MAX] },
    repliesDropped: c[C.REPLIES_DROPPED],
    unknownOpcodes: c[C.UNKNOWN_OPCODE],
    invalidations: c[C.INVALIDATIONS],
    reads: { inReaders: c[C.FAST_READS], toMain: c[C.READS_TO_MAIN] },
    // WRITEs whose crcs a reader computed; clusters whose slot header used such a crc (this process)
    writeCrcs: { inReaders: c[C.WRITE_CRCS], usedInSlots: knownCrcsUsed() },
    writeGathers: { turns: c[C.WRITE_GATHERS], writes: c[C.WRITES_GATHERED] },
  };
}
