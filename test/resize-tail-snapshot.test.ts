/**
 * A shrink to a size inside a cluster keeps the boundary cluster's old bytes past the new size in the
 * stored slot (vdisk.ts resizeLocked: no rewrite; zeroPastSize zeros them on the next grow). So a snapshot
 * (and a clone's base) taken after such a shrink names a slot with bytes past its size that are not the
 * disk's. Checks that they never show: not in the snapshot's backend view below its size, not after the
 * vDisk, a clone of the snapshot or a rollback to it grows (by resize or by a write past the end).
 * Regression of scrub-model seed 2112272066, whose check compared those invisible bytes.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openVPool } from '../volume/vpool.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { openBlobStore } from '../volume/backend/index.js';
import { pointData } from './helpers/scrub-check.js';

const CS = 4096;
const SIZE = 10 * CS + 100; // inside cluster 10

test('bytes past a shrunk size never show: in the snapshot, after a grow, in a clone, after a rollback', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-resize-tail-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const pool = await openVPool({ name: 'tail', stateDir: path.join(root, 'state'), backend: await openBlobStore(`file://${path.join(root, 'backend')}`), scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000 });
  try {
    await pool.createFile('/a', 0o644, 0, 0, 16 * CS);
    await pool.vdisk('/a').write(0, Buffer.alloc(16 * CS, 0xab));
    await pool.vdisk('/a').resize(SIZE);
    await pool.snapshots.create('/a', 'shrunk');
    await pool.snapshots.clone('/a', 'shrunk', '/c');
    await pool.vdisk('/a').syncToBackend();

    // the snapshot from the backend: its size, and every byte below it
    const v = pool.vdisk('/a') as VDiskImpl;
    const meta = v.docs.doc.snapshots.find((x) => x.name === 'shrunk')!;
    const got = await pointData(v.ctx.backend, v.id, v.docs.doc, meta.tlog);
    t.is(got.size, SIZE);
    for (let a = 0; a * CS < SIZE; a++) {
      const want = Buffer.alloc(Math.min(CS, SIZE - a * CS), 0xab);
      t.true((got.clusters.get(a) ?? Buffer.alloc(CS)).subarray(0, want.length).equals(want), `snapshot cluster ${a} below the size`);
    }

    const zerosPast = async (p: string, upTo: number, how: string): Promise<void> => {
      const bytes = await pool.vdisk(p).read(SIZE, upTo - SIZE);
      t.true(bytes.every((b) => b === 0), `${p} after ${how}: the bytes past the shrunk size read as zeros`);
      t.true((await pool.vdisk(p).read(0, SIZE)).equals(Buffer.alloc(SIZE, 0xab)), `${p} after ${how}: the bytes below it are kept`);
    };
    // the clone grows by a write past its end, the vDisk by a resize; then a rollback to the snapshot and a grow again
    await pool.vdisk('/c').write(12 * CS, Buffer.from([1]));
    await zerosPast('/c', 12 * CS, 'a growing write');
    await pool.vdisk('/a').resize(16 * CS);
    await zerosPast('/a', 16 * CS, 'a grow');
    await pool.vdisk('/a').write(10 * CS + 200, Buffer.alloc(8, 0xcd)); // dirties the boundary cluster past SIZE
    await pool.snapshots.rollback('/a', 'shrunk');
    t.is(pool.vdisk('/a').size, SIZE);
    await pool.vdisk('/a').resize(14 * CS);
    await zerosPast('/a', 14 * CS, 'a rollback to the snapshot and a grow');
  } finally {
    await pool.close();
  }
});
