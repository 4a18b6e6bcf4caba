/** The writes of test/helpers/dtl-many-writer.ts: op n writes one 4 KiB cluster of vDisk n % k, its bytes derived from n. */
import { createHash } from 'node:crypto';

export const MANY_CLUSTERS = 32;

export function manyOp(n: number, k: number): { vdisk: number; address: number; data: Buffer } {
  const h = createHash('sha256').update(`many ${n}`).digest();
  const data = Buffer.alloc(4096);
  for (let i = 0; i < data.length; i += h.length) h.copy(data, i);
  return { vdisk: n % k, address: h.readUInt32LE(0) % MANY_CLUSTERS, data };
}
