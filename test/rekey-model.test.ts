/**
 * Key rotation on an in-process vPool over a file:// backend (docs/encryption.md, "Key rotation"), seeded
 * (`VPOOLFS_SEED` replays; `VPOOLFS_REKEY_OPS` more ops per phase):
 * 1. under key A: random writes, snapshots, clones of snapshots, deletes of snapshots;
 * 2. reopened (fresh state directory: every read goes to the backend, through a small read cache) with key B
 *    and A as old key: the marker names B and retires A; B alone and A alone are refused. The rekey job runs
 *    while a second loop keeps writing, reading (checked against the reference), snapshotting, cloning and
 *    scrubbing (which deletes and writes objects under the job's feet); the job dies at a random object (its
 *    checkpoint throws), is started again and finishes;
 * 3. closed: every object's header in the backend directory names key B, and the marker retires nothing;
 *    reopened on a fresh state directory with B alone: every byte of every vDisk, clone and snapshot (read
 *    through a clone of it) equals the reference.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { keyIdOf } from '../volume/backend/crypto-format.js';
import { EncryptedBlobStore, EncryptionError } from '../volume/backend/encrypted-store.js';
import { ENCRYPTION_MARKER, openBackend } from '../volume/backend/open-backend.js';
import { RekeyJob } from '../volume/policy/rekey-job.js';
import { setLogLevel } from '../util/log.js';
import { checkAll, dieThenFinish, randomOp, rng, seedModel, type Model } from './helpers/policy-model.js';
import { objectsNotUnder } from './helpers/key-ids.js';
import { listFiles, poolEnv } from './helpers/vpool.js';
import { seeded } from './helpers/seed.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const A = Buffer.alloc(32, 0xa1);
const B = Buffer.alloc(32, 0xb2);
const OPS = Number(process.env.VPOOLFS_REKEY_OPS ?? 40);

test('rekey: random I/O, snapshots, clones and scrubs while rotating; a job killed half-way resumes; then the new key alone reads every byte', async (t) => {
  const { seed, rand } = seeded(t);
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const m: Model = { disks: new Map(), snaps: new Map(), n: 0 };

  // 1. under key A
  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  await seedModel(t, pool, m, rand, OPS);
  await env.close(pool);
  const idA = keyIdOf(A).toString('hex');
  const idB = keyIdOf(B).toString('hex');

  // 2. the rotation begins: B, with A for reading
  fs.rmSync(env.state, { recursive: true, force: true });
  const store = await openBackend(env.backendUrl, { encryptionKey: B, oldKeys: [A] }) as EncryptedBlobStore;
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(env.backendDir, ENCRYPTION_MARKER), 'utf8')).oldKeyIds, [idA]);
  t.deepEqual(store.retiring, [idA]);
  const refuse = async (keys: { encryptionKey: Buffer; oldKeys?: Buffer[] }, reason: string) => {
    const err = await t.throwsAsync(openBackend(env.backendUrl, keys));
    t.true(err instanceof EncryptionError && err.reason === reason, String(err));
  };
  await refuse({ encryptionKey: B }, 'MISSING_KEY');
  await refuse({ encryptionKey: A }, 'WRONG_KEY');
  pool = await env.open({ backend: store });

  const killAt = 1 + Math.floor(rand() * 20);
  let seen = 0;
  const job = new RekeyJob({
    store,
    gate: (w) => pool.backendGate!(w),
    checkpoint: async () => {
      if (++seen === killAt) throw new Error(`killed at object ${killAt}`);
    },
  });
  const ioRand = rng(seed ^ 0x5eed);
  const { first, last, ops } = await dieThenFinish(t, pool, m, ioRand, job, OPS);
  t.true(first.error?.includes('killed at object'), String(first.error));
  const progress = first.rewritten;
  t.log(`first run rewrote ${progress} objects before it died; the second: ${last.rewritten} objects (${last.bytesRewritten} bytes) in ${last.pass} passes, ${last.gone} deleted meanwhile; ${ops} ops during the rotation`);
  t.is(last.state, 'done', String(last.error));
  t.deepEqual(last.retiring, []);
  t.true(last.rewritten > 0);
  for (let i = 0; i < 10; i++) await randomOp(t, pool, m, ioRand, true);
  await env.close(pool);

  // 3. no object under A remains; B alone reads every byte
  const files = listFiles(env.backendDir).filter((f) => f !== ENCRYPTION_MARKER);
  t.true(files.some((f) => f.includes('/sco/')) && files.some((f) => f.includes('/tlog/')));
  t.deepEqual(objectsNotUnder(env.backendDir, files, idB), [], `objects not under key id ${idB}`);
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(env.backendDir, ENCRYPTION_MARKER), 'utf8')), { format: 'vpoolfs-aes-256-gcm-chunked-1', keyId: idB });
  await refuse({ encryptionKey: A }, 'WRONG_KEY');
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: B }) });
  const bytes = await checkAll(t, pool, m);
  t.log(`${files.length} objects, all under key id ${idB}; ${m.disks.size} vDisks and ${[...m.snaps.values()].reduce((n, s) => n + s.size, 0)} snapshots (${bytes} bytes) read right with the new key alone`);
  await env.close(pool);
});
