/**
 * The child of the scrub crash test: builds /d from a seeded history (scrubHistory, shared with the test's
 * reference), puts everything in the backend, then scrubs it — MODE owner: `pool.scrub.scrub` (job, apply,
 * sweep) in this process; MODE remote: the job alone on the backend, as another host. The HOLD-th backend
 * put or delete of the scrub never returns: the child prints `held KEY` and waits for the parent's SIGKILL there.
 * `done` if the scrub finished first.
 * Usage: node scrub-crash-child.js STATE BACKEND_DIR SEED MODE HOLD
 */
import path from 'node:path';
import { openBlobStore } from '../../volume/backend/index.js';
import { openVPool } from '../../volume/vpool.js';
import { scrubVDisk } from '../../volume/scrub/scrub-job.js';
import { playHistory } from './scrub-history.js';
import { hookedStore } from './hooked-store.js';

const [state, backendDir, seedArg, mode, holdArg] = process.argv.slice(2);
const inner = await openBlobStore(`file://${backendDir}`);
let counting = false;
let calls = 0;
const hold = Number(holdArg);
const gate = async (what: string): Promise<void> => {
  if (!counting || ++calls !== hold) return;
  process.stdout.write(`held ${what}\n`);
  await new Promise(() => undefined); // never: the parent kills us here
};
const store = hookedStore(inner, { beforePut: (key) => gate(`put ${key}`), beforeDelete: (key) => gate(`delete ${key}`) });
const pool = await openVPool({ name: 'crash', stateDir: state, backend: store, scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000 });
await playHistory(pool, Number(seedArg));
await pool.syncToBackend();
counting = true;
if (mode === 'remote') await scrubVDisk(store, pool.vdisk('/d').info().id, { scratchDir: path.join(state, '..', 'remote-scratch'), scoClusters: 8 });
else await pool.scrub.scrub('/d');
process.stdout.write('done\n');
await pool.close();
