/**
 * The child of the snapshot crash tests: builds /d with snapshots s1 and s2 (data A, then B, then C), puts
 * everything in the backend, then (MODE rollback) rolls back to s1 or (MODE clone) clones s1 to /c, with every
 * put of a vDisk document held; prints `held` once the operation waits there and waits to be SIGKILLed.
 * Usage: node snapshot-crash-child.js STATE BACKEND_DIR MODE
 */
import { openBlobStore } from '../../volume/backend/index.js';
import { openVPool } from '../../volume/vpool.js';
import { pattern } from './vpool.js';
import { hookedStore } from './hooked-store.js';

const [state, backendDir, mode] = process.argv.slice(2);
const inner = await openBlobStore(`file://${backendDir}`);
let hold = false;
const store = hookedStore(inner, {
  beforePut: async (key) => {
    if (hold && key.endsWith('/vdisk.json')) {
      process.stdout.write('held\n');
      await new Promise(() => undefined); // never: the parent kills us here
    }
  },
});
const pool = await openVPool({ name: 'crash', stateDir: state, backend: store, scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000 });
await pool.createFile('/d', 0o644, 0, 0, 1 << 20);
const v = pool.vdisk('/d');
await v.write(0, pattern(1, 200_000));
await pool.snapshots.create('/d', 's1');
await v.write(100_000, pattern(2, 300_000));
await v.resize(2 << 20);
await pool.snapshots.create('/d', 's2');
await v.write(0, pattern(3, 50_000));
await pool.syncToBackend();
hold = true;
if (mode === 'clone') await pool.snapshots.clone('/d', 's1', '/c');
else await pool.snapshots.rollback('/d', 's1');
process.stdout.write(`${mode} returned: the gate did not hold\n`);
