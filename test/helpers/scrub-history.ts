/**
 * A seeded history of one vDisk /d for the scrub crash test: overwrites, snapshots, a snapshot delete and
 * a resize; played on a vPool (the child) and on a RefDisk with its snapshots (the test's reference).
 */
import type { VPool } from '../../volume/types.js';
import { pattern, RefDisk, rng } from './ref-disk.js';

const CS = 4096;

type Op = { kind: 'write'; off: number; data: Buffer } | { kind: 'snapshot'; name: string } | { kind: 'delete'; name: string } | { kind: 'resize'; size: number };

export function scrubHistory(seed: number): Op[] {
  const r = rng(seed);
  const ops: Op[] = [];
  const snaps: string[] = [];
  let size = 128 * CS;
  ops.push({ kind: 'resize', size });
  for (let i = 0; i < 160; i++) {
    const k = r();
    if (k < 0.8) {
      const n = 1 + Math.floor(r() * 8);
      ops.push({ kind: 'write', off: Math.floor(r() * (size / CS - n)) * CS, data: pattern(seed, i, n * CS) });
    } else if (k < 0.9) {
      snaps.push(`s${i}`);
      ops.push({ kind: 'snapshot', name: `s${i}` });
    } else if (k < 0.95 && snaps.length > 1) {
      ops.push({ kind: 'delete', name: snaps.splice(Math.floor(r() * (snaps.length - 1)), 1)[0] });
    } else {
      size = (96 + Math.floor(r() * 64)) * CS;
      ops.push({ kind: 'resize', size });
    }
  }
  return ops;
}

export async function playHistory(pool: VPool, seed: number): Promise<void> {
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  for (const op of scrubHistory(seed)) {
    if (op.kind === 'write') await v.write(op.off, op.data);
    else if (op.kind === 'resize') await v.resize(op.size);
    else if (op.kind === 'snapshot') await pool.snapshots.create('/d', op.name);
    else await pool.snapshots.remove('/d', op.name);
  }
}

/** The head and every kept snapshot of the history, as RefDisks. */
export function referenceOf(seed: number): { head: RefDisk; snapshots: Map<string, RefDisk> } {
  const head = new RefDisk();
  const snapshots = new Map<string, RefDisk>();
  for (const op of scrubHistory(seed)) {
    if (op.kind === 'write') head.write(op.off, op.data);
    else if (op.kind === 'resize') head.resize(op.size);
    else if (op.kind === 'snapshot') snapshots.set(op.name, head.clone());
    else snapshots.delete(op.name);
  }
  return { head, snapshots };
}
