/**
 * A takeback tried again after a failure (docs/cluster.md, "Ownership per vDisk"), at the volume layer: the
 * vPool's owner takes a handed-over vDisk back (VPool.takeBackVDisk under a new owner tag), and the backend refuses
 * a read after the owner-tag fence was written — the try fails with the fence in the backend. The next try (what
 * tools/daemon/vdisk-move.ts does, with a back-off) must number its TLogs and SCOs past that fence's gap: numbered
 * inside it, every write after the takeback would count for nothing at the next rebuild from the backend. Checked
 * by a third vPool rebuilding from the backend: it reads the writes made after the takeback, byte for byte.
 */
import test from 'ava';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import { tagFenceKey } from '../volume/datapath/formats/epoch-fence.js';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import { hookedStore } from './helpers/hooked-store.js';
import { seeded } from './helpers/seed.js';

test('a takeback that failed after its fence was written, tried again: the writes after it survive a rebuild from the backend', async (t) => {
  const { rand } = seeded(t);
  const env = poolEnv(t);
  const raw = await openBlobStore(env.backendUrl);
  t.teardown(() => raw.close());
  const TAG = 7;
  let refuseAfterFence = false;
  let refused = 0;
  // (closing a vPool closes its backend: each open gets a store of its own)
  const backend = async () => hookedStore(await openBlobStore(env.backendUrl), {
    exclusive: true,
    beforePut: (key) => {
      if (key === tagFenceKey(key.split('/')[1], TAG)) refuseAfterFence = true;
    },
    beforeGet: (key) => {
      if (refuseAfterFence && refused === 0) {
        refused++;
        throw Object.assign(new Error(`test: the backend refuses get ${key}`), { code: 'BACKEND' });
      }
    },
  });
  const SIZE = 256 * CS;
  const before = pattern(rand() * 1e9, SIZE);
  const a0 = await env.open({ name: 'pool', routerId: 'ra', backend: await backend() });
  await a0.createFile('/d', 0o644, 0, 0, SIZE);
  await a0.vdisk('/d').write(0, before);
  await env.close(a0);
  // a restart on the same state directory: its claim epoch writes no fence of its own (a first start may, and
  // that fence would hide the gap this test is about)
  const a = await env.open({ name: 'pool', routerId: 'ra', backend: await backend() });
  const { id } = await a.handOverVDisk!('/d', 'rb');

  // the first try writes the fence, then the backend refuses: it fails and the vDisk answers BUSY with the cause
  const first = await a.takeBackVDisk!(id, TAG).then(() => null, (err: Error) => err);
  t.truthy(first, 'the first try fails');
  t.is(refused, 1);
  t.truthy(await raw.head(tagFenceKey(id, TAG)), 'its fence is in the backend');
  t.throws(() => a.vdisk('/d'), { message: /is being taken back from router 'rb' and could not be opened here yet \(test: the backend refuses/ });
  await a.takeBackVDisk!(id, TAG);

  // writes after the takeback, several TLogs of them (8-cluster SCOs, 2 per TLog), shipped
  const after = Buffer.from(before);
  const v = a.vdisk('/d');
  for (let i = 0; i < 64; i++) {
    const at = Math.floor(rand() * 256) * CS;
    const data = pattern(rand() * 1e9, CS);
    data.copy(after, at);
    await v.write(at, data);
  }
  await v.syncToBackend();
  t.deepEqual(await v.read(0, SIZE), after);
  await env.close(a);

  const c = await env.open({ name: 'pool', routerId: 'rc', stateDir: path.join(env.root, 'rc-state'), force: true });
  const got = await c.vdisk('/d').read(0, SIZE);
  let diff = 0;
  for (let i = 0; i < SIZE; i += CS) if (!got.subarray(i, i + CS).equals(after.subarray(i, i + CS))) diff++;
  t.is(diff, 0, `${diff} of 256 clusters differ after a rebuild from the backend (the writes after the retried takeback)`);
});
