/**
 * The child of test/sco-fd-budget.test.ts, started under a low `ulimit -n`: a vPool with one-cluster SCOs
 * whose backend holds every put until the writes are done (a backend slower than the writer), so that
 * thousands of SCOs are local and not yet synced at once. Writes SCOS clusters at distinct places (each its
 * own SCO), an fsync, then lets the backend go, ships everything, reads every cluster back (from the write
 * cache: every SCO is still local) and checks it. Prints `ok <open SCO descriptors> <dropped>` or dies with
 * the error (EMFILE without the bound: the write cache faults).
 * Usage: node fd-limit-child.js STATE SCOS SEED
 */
import { openBlobStore } from '../../volume/backend/index.js';
import { openVPool } from '../../volume/vpool.js';
import { scoFdBudget } from '../../volume/datapath/write-cache/sco-fd-budget.js';
import { hookedStore } from './hooked-store.js';
import { pattern } from './ref-disk.js';

const [state, scosArg, seedArg] = process.argv.slice(2);
const scos = Number(scosArg);
const seed = Number(seedArg);
const CS = 4096;
let release!: () => void;
const held = new Promise<void>((resolve) => (release = resolve));
const inner = await openBlobStore(`file://${state}/backend`);
const store = hookedStore(inner, { beforePut: (key) => (key.includes('/sco/') || key.includes('/tlog/') ? held : undefined) });
const pool = await openVPool({ name: 'fds', stateDir: state, backend: store, scoClusters: 1, tlogScos: 64, scoMaxAgeMs: 3_600_000, checkpointEveryTlogs: 0 });
await pool.createFile('/d', 0o644, 0, 0, scos * 2 * CS);
const v = pool.vdisk('/d');
for (let i = 0; i < scos; i++) await v.write(i * 2 * CS, pattern(seed, i, CS));
await v.sync(); // every SCO synced, those whose descriptor was dropped included
const open = scoFdBudget.open;
release();
await v.syncToBackend();
for (let i = 0; i < scos; i++) {
  const got = await v.read(i * 2 * CS, CS);
  if (!got.equals(pattern(seed, i, CS))) throw new Error(`cluster ${i} reads back wrong`);
}
await pool.close();
await inner.close();
process.stdout.write(`ok ${open} ${scoFdBudget.dropped}\n`);
