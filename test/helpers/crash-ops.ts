/** The operation sequence shared by the crash-test child and its checker: op n is a pure function of (seed, n). */
import type { VDisk } from '../../volume/types.js';
import { pattern, rng, type RefDisk } from './ref-disk.js';

export const CRASH_DISK_MAX = 48 * 2 ** 20;

export type CrashOp = { kind: 'write'; offset: number; data: Buffer } | { kind: 'resize'; size: number } | { kind: 'sync' };

export function crashOp(seed: number, n: number): CrashOp {
  const r = rng((seed ^ Math.imul(n, 2654435761)) >>> 0);
  const k = r();
  if (k < 0.03) return { kind: 'resize', size: Math.floor(r() * CRASH_DISK_MAX) };
  if (k < 0.08) return { kind: 'sync' };
  const len = r() < 0.5 ? 1 + Math.floor(r() * 9000) : 4096 * (1 + Math.floor(r() * 32));
  const offset = Math.floor(r() * (CRASH_DISK_MAX - len));
  return { kind: 'write', offset, data: pattern(seed, n, len) };
}

/** A child's endless loop: op n on `v` from `first` on, then `ack n` once it has resolved (for a sync, once the fsync returned). */
export async function runCrashOps(v: VDisk, seed: number, first: number, ack: (line: string) => void): Promise<never> {
  for (let n = first; ; n++) {
    const op = crashOp(seed, n);
    if (op.kind === 'write') await v.write(op.offset, op.data);
    else if (op.kind === 'resize') await v.resize(op.size);
    else await v.sync();
    ack(`ack ${n}`);
  }
}

/** Op n of `seed` applied to the reference disk (a sync changes nothing there). */
export function applyCrashOp(ref: RefDisk, seed: number, n: number): void {
  const op = crashOp(seed, n);
  if (op.kind === 'write') ref.write(op.offset, op.data);
  else if (op.kind === 'resize') ref.resize(op.size);
}
