/**
 * The claim on the backend in-process (docs/cluster.md), for what the daemon tests (claim-routers,
 * s3-claim, s3-restart) do not reach:
 * - a restart while the backend is down serves its local state with a deferred claim: nothing reaches the
 *   backend until it is back; then the claim is taken (the next epoch) and everything drains;
 * - the same restart when another router held the vPool meanwhile: when the backend is back this router is
 *   fenced (I/O FENCED, nothing shipped), and the other router's data is what the backend serves;
 * - a backend from before claims (no claim, no fence, `pool/tree.json`) opens as epoch 0: its data is all there.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import type { BlobStore } from '../volume/backend/types.js';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import { isCode } from '../util/errors.js';
import { GatedStore } from './helpers/gated-store.js';
import { pattern } from './helpers/vpool.js';
import { until } from './helpers/until.js';

function tmp(t: ExecutionContext): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-claimv-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

/** Records every put that reaches the store (failing or not): what got past the vPool's self-fence. */
class RecordingStore extends GatedStore {
  readonly keys: string[] = [];
  constructor(inner: BlobStore) {
    super(inner);
    const create = this.createExclusive;
    if (create !== undefined) {
      this.createExclusive = (key, data) => {
        this.keys.push(key);
        return create(key, data);
      };
    }
  }

  override async put(key: string, data: Uint8Array): Promise<void> {
    this.keys.push(key);
    return super.put(key, data);
  }
}

const base = { name: 'c', scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000, claimLeaseMs: 600 };

test('a restart during a backend outage serves its local state; the claim is taken when the backend is back, then everything drains', async (t) => {
  const root = tmp(t);
  const backendUrl = `file://${path.join(root, 'backend')}`;
  const a1 = await openVPool({ ...base, stateDir: path.join(root, 'a'), backendUrl, routerId: 'a' });
  await a1.createFile('/d', 0o644, 0, 0, 64 * 4096);
  await a1.vdisk('/d').write(0, pattern(1, 8 * 4096));
  await a1.close();

  const gated = new RecordingStore(await openBlobStore(backendUrl));
  gated.setFailing(true, true);
  let a2: VPool | undefined = await openVPool({ ...base, stateDir: path.join(root, 'a'), backend: gated, routerId: 'a' });
  t.teardown(() => a2?.close().catch(() => undefined));
  const v = a2.vdisk('/d');
  t.deepEqual(await v.read(0, 8 * 4096), pattern(1, 8 * 4096), 'the local state serves');
  await v.write(8 * 4096, pattern(2, 8 * 4096));
  (v as unknown as { ship(): void }).ship(); // close the TLog: an upload is queued (and held back)
  await until('the claim was tried three times', () => gated.failed >= 3); // the claim was tried again (its reads fail) while the upload waits
  t.deepEqual(gated.keys, [], 'no write reaches the backend before the claim is taken');
  t.is(a2.cacheStats().claim?.epoch, 1, 'still the epoch this state held');
  gated.setFailing(false);
  await a2.syncToBackend();
  t.regex(gated.keys[0], /^pool\/claim\/0+2$/, `the claim first: ${gated.keys.slice(0, 3).join(', ')}`);
  t.is(a2.cacheStats().claim?.epoch, 2);
  t.false(a2.cacheStats().claim?.fenced);
  await a2.close();
  a2 = undefined;
  const c = await openVPool({ ...base, stateDir: path.join(root, 'c'), backendUrl, routerId: 'c' });
  t.deepEqual(await c.vdisk('/d').read(0, 16 * 4096), Buffer.concat([pattern(1, 8 * 4096), pattern(2, 8 * 4096)]), 'everything drained to the backend');
  await c.close();
});

test('a restart during a backend outage after another router held the vPool: fenced when the backend is back', async (t) => {
  const root = tmp(t);
  const backendUrl = `file://${path.join(root, 'backend')}`;
  const a1 = await openVPool({ ...base, stateDir: path.join(root, 'a'), backendUrl, routerId: 'a' });
  await a1.createFile('/d', 0o644, 0, 0, 64 * 4096);
  await a1.vdisk('/d').write(0, pattern(1, 8 * 4096));
  await a1.close();
  // router B serves the vPool and changes the disk, then stops
  const b = await openVPool({ ...base, stateDir: path.join(root, 'b'), backendUrl, routerId: 'b' });
  await b.vdisk('/d').write(0, pattern(3, 8 * 4096));
  await b.close();

  const gated = new GatedStore(await openBlobStore(backendUrl));
  gated.setFailing(true, true);
  let a2: VPool | undefined = await openVPool({ ...base, stateDir: path.join(root, 'a'), backend: gated, routerId: 'a' });
  t.teardown(() => a2?.close().catch(() => undefined));
  const v = a2.vdisk('/d');
  await v.write(8 * 4096, pattern(2, 8 * 4096)); // into the stale local state
  gated.setFailing(false);
  await until('a2 is fenced', () => a2!.cacheStats().claim?.fenced === true);
  const err = await t.throwsAsync(v.read(0, 4096));
  t.true(isCode(err, 'FENCED'), String(err));
  t.regex(err!.message, /router 'b' .* since this state directory held it \(epoch 1\)/);
  await t.throwsAsync(a2.mkdir('/x', 0o755, 0, 0), { message: /lost its claim/ });
  await a2.close();
  a2 = undefined;
  const c = await openVPool({ ...base, stateDir: path.join(root, 'c'), backendUrl, routerId: 'c' });
  const got = await c.vdisk('/d').read(0, 16 * 4096);
  t.deepEqual(got, Buffer.concat([pattern(3, 8 * 4096), Buffer.alloc(8 * 4096)]), "B's data; nothing of A's stale state");
  await c.close();
});

test('a backend from before claims (no claim, no fence, pool/tree.json) opens as epoch 0 with all its data', async (t) => {
  const root = tmp(t);
  const backendDir = path.join(root, 'backend');
  const backendUrl = `file://${backendDir}`;
  const a = await openVPool({ ...base, stateDir: path.join(root, 'a'), backendUrl, routerId: 'a' });
  await a.createFile('/d', 0o644, 0, 0, 64 * 4096);
  await a.vdisk('/d').write(4096, pattern(5, 20 * 4096));
  await a.close();
  // make it an old backend: the tree at the old key, no claim, no fence objects
  const trees = fs.readdirSync(path.join(backendDir, 'pool', 'tree'));
  t.is(trees.length, 1);
  fs.renameSync(path.join(backendDir, 'pool', 'tree', trees[0]), path.join(backendDir, 'pool', 'tree.json'));
  for (const dir of ['pool/tree', 'pool/claim']) fs.rmSync(path.join(backendDir, dir), { recursive: true, force: true });
  for (const id of fs.readdirSync(path.join(backendDir, 'vdisks'))) fs.rmSync(path.join(backendDir, 'vdisks', id, 'fence'), { recursive: true, force: true });
  const c = await openVPool({ ...base, stateDir: path.join(root, 'c'), backendUrl, routerId: 'c' });
  t.is(c.cacheStats().claim?.epoch, 1, 'no claim: epoch 0 before it, 1 now');
  t.deepEqual(await c.vdisk('/d').read(4096, 20 * 4096), pattern(5, 20 * 4096));
  await c.close();
});
