/**
 * The child of the checkpoint crash test (test/checkpoint-crash.test.ts): opens the vPool (rebuilding /d from
 * the backend when its state is fresh), then writes 4 KiB at random places of a 4 GiB vDisk and ships after
 * each write, with a map checkpoint due every TLog — the map spans 1,024 pages, so each checkpoint is a put
 * of 8 MiB and the child spends most of its time in one. It prints `ckpt KEY` when a checkpoint's put
 * starts; the parent kills it with SIGKILL soon after.
 * Usage: node checkpoint-child.js STATE BACKEND_DIR SEED
 */
import { openBlobStore } from '../../volume/backend/index.js';
import { openVPool } from '../../volume/vpool.js';
import type { VDiskImpl } from '../../volume/vdisk/vdisk.js';
import { pattern, rng } from './ref-disk.js';
import { hookedStore } from './hooked-store.js';

const [state, backendDir, seedArg] = process.argv.slice(2);
const inner = await openBlobStore(`file://${backendDir}`);
const store = hookedStore(inner, {
  beforePut: (key) => {
    if (key.includes('/checkpoint/')) process.stdout.write(`ckpt ${key}\n`);
  },
});
// force: the previous child was killed with its claim live
const pool = await openVPool({ name: 'ckpt-crash', stateDir: state, backend: store, scoClusters: 8, tlogScos: 1, scoMaxAgeMs: 3_600_000, checkpointEveryTlogs: 1, force: true, claimLeaseMs: 2000 });
const SIZE = 4 * 2 ** 30;
const seed = Number(seedArg);
const r = rng(seed);
if (!pool.readdir('/').includes('d')) {
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  // one cluster in each 4 MiB: the map has 1,024 pages from the start, a checkpoint is 8 MiB
  for (let a = 0; a < SIZE / 4096; a += 1024) await pool.vdisk('/d').write(a * 4096, pattern(seed, a, 4096));
}
const v = pool.vdisk('/d') as VDiskImpl;
await v.syncToBackend();
await v.checkpoints.flush(); // from here on every checkpoint is a put of the whole 1,024-page map
process.stdout.write('up\n');
for (let i = 0; ; i++) {
  await v.write(Math.floor(r() * (SIZE / 4096)) * 4096, pattern(seed, i, 4096));
  await v.syncToBackend();
}
