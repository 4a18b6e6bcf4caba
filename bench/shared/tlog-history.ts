/**
 * A vDisk with a history of N TLogs, for the benches that measure what a long history costs (`checkpoint.ts`,
 * `rebuild-history.ts` in one process, `cluster-history.ts` through a router's mount). With SCOs of `clusters`
 * clusters and one SCO per TLog (`tlogScos: 1`), write i — one full SCO, filled with i's low byte and i at its
 * start — closes the SCO and with it a TLog: one TLog per write. Where write i goes: `spread` — an odd multiplier
 * modulo a power of two, so every one of `places` places once per `places` writes, in a scattered order; else
 * in turn (i modulo `places`).
 */
import { openVPool } from '../../volume/vpool.js';
import type { VPool } from '../../volume/types.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';

export interface HistoryShape {
  /** Clusters (4 KiB) per SCO: the size of each write. */
  clusters: number;
  /** How many places of one write the writes go round (a power of two with `spread`). */
  places: number;
  spread: boolean;
}

/** Writes i = from … from + n − 1 through `write` (a vDisk's, a file handle's), one TLog each (see the header). */
export async function writeTlogs(write: (buf: Buffer, offset: number) => Promise<unknown>, from: number, n: number, shape: HistoryShape): Promise<void> {
  const buf = Buffer.alloc(shape.clusters * 4096);
  for (let i = from; i < from + n; i++) {
    buf.fill(i & 0xff);
    buf.writeUInt32LE(i, 0);
    const place = shape.spread ? (i * 2654435761) % shape.places : i % shape.places;
    await write(buf, place * buf.length);
  }
}

/**
 * Builds the backend of `base` (its options must say `scoClusters: shape.clusters, tlogScos: 1` and a long
 * scoMaxAgeMs): a vDisk `vdisk` of `size` bytes gets n − behind TLogs, a clean stop writes a map checkpoint there,
 * then `behind` more TLogs come without one (the checkpoint is behind, as it is between two of them).
 */
export async function buildHistory(base: VPoolOptions, vdisk: string, size: number, n: number, behind: number, shape: HistoryShape): Promise<void> {
  const fill = async (pool: VPool, from: number, count: number): Promise<void> => {
    const v = pool.vdisk(vdisk);
    await writeTlogs((buf, offset) => v.write(offset, buf), from, count, shape);
    await pool.syncToBackend();
  };
  let pool = await openVPool({ ...base, checkpointEveryTlogs: 1_000_000 }); // none by count: one at the clean stop
  await pool.createFile(vdisk, 0o644, 0, 0, size);
  await fill(pool, 0, n - behind);
  await pool.close();
  pool = await openVPool({ ...base, checkpointEveryTlogs: 0 });
  await fill(pool, n - behind, behind);
  await pool.close();
}
