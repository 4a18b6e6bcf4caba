/**
 * The policy updates on the s3:// backend (a real Ceph radosgw started for this file):
 * - key rotation (docs/encryption.md, "Key rotation"): a vPool written under key A, reopened with key B and A
 *   as old key on a fresh state directory; the rekey job runs while writes and snapshots go on; then every
 *   object's header (read raw from the bucket) names key B, and B alone, again on a fresh state directory,
 *   reads every byte of the vDisk and its snapshots;
 * - a backend move (docs/scrubbing.md, "Policy updates") of an encrypted vPool from file:// to S3 while writes
 *   and snapshots go on: the old backend is left with only its moved.json, and the bucket alone, on a fresh
 *   state directory, reads every byte of the vDisk and its snapshots.
 */
import test from 'ava';
import fs from 'node:fs';
import { setLogLevel } from '../util/log.js';
import { HEADER_SIZE, keyIdOf, parseHeader } from '../volume/backend/crypto-format.js';
import type { EncryptedBlobStore } from '../volume/backend/encrypted-store.js';
import { openBlobStore } from '../volume/backend/index.js';
import { ENCRYPTION_MARKER, openBackend, openBackendOn } from '../volume/backend/open-backend.js';
import { MoveJob, openMove } from '../volume/policy/move-job.js';
import { RekeyJob } from '../volume/policy/rekey-job.js';
import { listFiles, pattern, poolEnv } from './helpers/vpool.js';
import { useS3Server } from './helpers/s3-server.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const s3 = useS3Server('rekey');
const A = Buffer.alloc(32, 0x1a);
const B = Buffer.alloc(32, 0x2b);
const SIZE = 2 ** 20;

test('rekey on S3: writes and snapshots go on during the rotation; every object ends under the new key, which alone reads every byte', async (t) => {
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const url = s3.url('rekey', 'vp');
  const ref = Buffer.alloc(SIZE);
  const snaps: Array<{ name: string; data: Buffer }> = [];
  let seq = 0;
  const write = async (pool: Awaited<ReturnType<typeof env.open>>): Promise<void> => {
    const off = ((seq * 7919) % 240) * 4096;
    const data = pattern(++seq, 3 * 4096 + 100);
    await pool.vdisk('/d').write(off, data);
    data.copy(ref, off);
  };

  let pool = await env.open({ backend: await openBackend(url, { encryptionKey: A }) });
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  for (let i = 0; i < 40; i++) {
    await write(pool);
    if (i % 10 === 9) {
      await pool.snapshots.create('/d', `s${i}`);
      snaps.push({ name: `s${i}`, data: Buffer.from(ref) });
    }
  }
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  const store = (await openBackend(url, { encryptionKey: B, oldKeys: [A] })) as EncryptedBlobStore;
  pool = await env.open({ backend: store });
  const job = new RekeyJob({ store, gate: (w) => pool.backendGate!(w) });
  const done = job.start();
  let during = 0;
  // a bounded number of writes while the job runs (each write makes new objects the job's next pass lists)
  while (during < 10 || (job.status().state === 'running' && during < 20)) {
    await write(pool);
    t.true((await pool.vdisk('/d').read(0, SIZE)).equals(ref), 'reads right during the rotation');
    if (++during === 5) {
      await pool.snapshots.create('/d', 'mid');
      snaps.push({ name: 'mid', data: Buffer.from(ref) });
    }
  }
  const st = await done;
  t.is(st.state, 'done', String(st.error));
  await env.close(pool);

  const raw = await openBlobStore(url);
  const keys = (await raw.list('')).filter((k) => k !== ENCRYPTION_MARKER);
  const idB = keyIdOf(B).toString('hex');
  const wrong: string[] = [];
  for (const k of keys) {
    const h = parseHeader(await raw.getRange(k, 0, HEADER_SIZE));
    if (typeof h !== 'object' || h.keyId.toString('hex') !== idB) wrong.push(k);
  }
  await raw.close();
  t.deepEqual(wrong, []);
  t.true(keys.length > 10, `${keys.length} objects`);

  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(url, { encryptionKey: B }) });
  t.true((await pool.vdisk('/d').read(0, SIZE)).equals(ref), 'the head, with B alone');
  for (const s of snaps) {
    await pool.snapshots.clone('/d', s.name, `/v-${s.name}`);
    t.true((await pool.vdisk(`/v-${s.name}`).read(0, SIZE)).equals(s.data), `snapshot ${s.name}, with B alone`);
  }
  t.log(`${st.rewritten} objects rewritten in ${st.pass} passes while ${during} writes went on; ${keys.length} objects under key B; ${snaps.length} snapshots read right`);
  await env.close(pool);
});

test('backend move from file:// to S3, encrypted: writes and snapshots go on; the bucket alone then reads every byte', async (t) => {
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const url = s3.url('moved', 'vp');
  const ref = Buffer.alloc(SIZE);
  const snaps: Array<{ name: string; data: Buffer }> = [];
  let seq = 0;
  const write = async (pool: Awaited<ReturnType<typeof env.open>>): Promise<void> => {
    const off = ((seq * 7919) % 240) * 4096;
    const data = pattern(++seq, 3 * 4096 + 100);
    await pool.vdisk('/d').write(off, data);
    data.copy(ref, off);
  };
  const snapshot = async (pool: Awaited<ReturnType<typeof env.open>>, name: string): Promise<void> => {
    await pool.snapshots.create('/d', name);
    snaps.push({ name, data: Buffer.from(ref) });
  };

  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  await pool.createFile('/d', 0o644, 0, 0, SIZE);
  for (let i = 0; i < 40; i++) {
    await write(pool);
    if (i % 10 === 9) await snapshot(pool, `s${i}`);
  }
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  fs.mkdirSync(env.state, { recursive: true });
  const moving = await openMove(env.backendUrl, url, env.state);
  pool = await env.open({ backend: await openBackendOn(moving.store, { encryptionKey: A }) });
  const job = new MoveJob({ mirror: moving.mirror!, stateDir: env.state, gate: (w) => pool.backendGate!(w) });
  const done = job.start();
  let during = 0;
  while (during < 10 || (job.status().state === 'running' && during < 20)) {
    await write(pool);
    t.true((await pool.vdisk('/d').read(0, SIZE)).equals(ref), 'reads right during the move');
    if (++during === 5) await snapshot(pool, 'mid');
  }
  const st = await done;
  t.is(st.state, 'done', String(st.error));
  await write(pool);
  await snapshot(pool, 'after');
  await env.close(pool);

  t.deepEqual(listFiles(env.backendDir), ['moved.json']);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(url, { encryptionKey: A }) });
  t.true((await pool.vdisk('/d').read(0, SIZE)).equals(ref), 'the head, from the bucket alone');
  for (const s of snaps) {
    await pool.snapshots.clone('/d', s.name, `/v-${s.name}`);
    t.true((await pool.vdisk(`/v-${s.name}`).read(0, SIZE)).equals(s.data), `snapshot ${s.name}, from the bucket alone`);
  }
  t.log(`${st.copied} objects copied (${st.bytesCopied} bytes) in ${st.pass} passes while ${during} writes went on; ${st.drained} drained from file://; ${snaps.length} snapshots read right`);
  await env.close(pool);
});
