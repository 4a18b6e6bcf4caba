/**
 * A remote scrubber held in the middle of its job, for test/scrub-lock.test.ts: takes the scrub lock of vDisk
 * ID (as `vpoolfs scrub --backend` does: ScrubLock.with around scrubVDisk) with a lease of LEASE_MS, and its
 * first put of a scrub object never returns; it prints `held` there and keeps renewing its lease until the
 * parent kills it (-9). The holder is named "lock test holder".
 * Usage: node scrub-lock-child.js BACKEND_URL ID SCRATCH LEASE_MS
 */
import { openBlobStore } from '../../volume/backend/index.js';
import { scrubVDisk } from '../../volume/scrub/scrub-job.js';
import { ScrubLock } from '../../volume/scrub/scrub-lock.js';
import { hookedStore } from './hooked-store.js';

const [url, id, scratch, leaseArg] = process.argv.slice(2);
const inner = await openBlobStore(url);
const store = hookedStore(inner, {
  exclusive: true,
  beforePut: async (key) => {
    if (key.startsWith(`vdisks/${id}/scrub/`)) {
      process.stdout.write('held\n');
      setInterval(() => undefined, 2 ** 30); // the lease's renewal timer is unref'd: this keeps the process alive
      await new Promise(() => undefined); // never: the parent kills us here
    }
  },
});
await ScrubLock.with(store, id, { holder: 'lock test holder', leaseMs: Number(leaseArg) }, (lock) =>
  scrubVDisk(store, id, { scratchDir: scratch, scoClusters: 8, checkpoint: () => lock.check() }));
process.stdout.write('done\n');
