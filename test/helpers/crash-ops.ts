/** The operation sequence shared by the crash-test children and their checkers: op n is a pure function of (seed, n). */
import type { VDisk } from '../../volume/types.js';
import { pattern, rng, type RefDisk } from './ref-disk.js';

export const CRASH_DISK_MAX = 48 * 2 ** 20;

export type CrashOp =
  | { kind: 'write'; offset: number; data: Buffer }
  | { kind: 'resize'; size: number }
  | { kind: 'sync' }
  /** Discards offset..offset+length, cut to the size at that point (nothing when it starts past it). */
  | { kind: 'discard'; offset: number; length: number };

/** Where op `n` writes if it is a write (a discard aims at the range of a recent one, so it hits data). */
function writeShape(seed: number, n: number): { offset: number; length: number; r: () => number } {
  const r = rng((seed ^ Math.imul(n, 2654435761)) >>> 0);
  r();
  const length = r() < 0.5 ? 1 + Math.floor(r() * 9000) : 4096 * (1 + Math.floor(r() * 32));
  return { offset: Math.floor(r() * (CRASH_DISK_MAX - length)), length, r };
}

export function crashOp(seed: number, n: number): CrashOp {
  const k = rng((seed ^ Math.imul(n, 2654435761)) >>> 0)();
  const { offset, length, r } = writeShape(seed, n);
  if (k < 0.03) return { kind: 'resize', size: Math.floor(r() * CRASH_DISK_MAX) };
  if (k < 0.08) return { kind: 'sync' };
  if (k < 0.16 && n > 0) {
    // part of (or a bit more than) the range a write among the last 8 ops would have covered, at any alignment
    const w = writeShape(seed, Math.max(0, n - 1 - Math.floor(r() * 8)));
    const from = Math.max(0, w.offset + Math.floor((r() - 0.3) * w.length));
    return { kind: 'discard', offset: from, length: 1 + Math.floor(r() * 1.5 * w.length) };
  }
  return { kind: 'write', offset, data: pattern(seed, n, length) };
}

/** The part of discard `op` inside a disk of `size` bytes (length 0: none). */
export function discardIn(op: { offset: number; length: number }, size: number): { offset: number; length: number } {
  return { offset: op.offset, length: Math.max(0, Math.min(op.offset + op.length, size) - op.offset) };
}

/** Runs `op` on vDisk `v` (the crash children, and the checkers that replay an op after a recovery). */
export async function runOp(v: VDisk, op: CrashOp): Promise<void> {
  if (op.kind === 'write') await v.write(op.offset, op.data);
  else if (op.kind === 'resize') await v.resize(op.size);
  else if (op.kind === 'discard') {
    const d = discardIn(op, v.size);
    if (d.length > 0) await v.discard(d.offset, d.length);
  } else await v.sync();
}

/** A child's endless loop: op n on `v` from `first` on, then `ack n` once it has resolved (for a sync, once the fsync returned). */
export async function runCrashOps(v: VDisk, seed: number, first: number, ack: (line: string) => void): Promise<never> {
  for (let n = first; ; n++) {
    await runOp(v, crashOp(seed, n));
    ack(`ack ${n}`);
  }
}

/** Op n of `seed` applied to the reference disk (a sync changes nothing there). */
export function applyCrashOp(ref: RefDisk, seed: number, n: number): void {
  const op = crashOp(seed, n);
  if (op.kind === 'write') ref.write(op.offset, op.data);
  else if (op.kind === 'resize') ref.resize(op.size);
  else if (op.kind === 'discard') {
    const d = discardIn(op, ref.size);
    if (d.length > 0) ref.discard(d.offset, d.length);
  }
}
