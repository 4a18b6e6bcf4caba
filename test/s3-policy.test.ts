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
import test, { type ExecutionContext } from 'ava';
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

type Pool = Awaited<ReturnType<ReturnType<typeof poolEnv>['open']>>;

/**
 * What both tests do to one vDisk `/d` and check of it: writes at places that walk the vDisk, snapshots, each
 * with its reference; a job run while writes and reads go on; every byte of the head and of each snapshot
 * (through a clone) checked at the end.
 */
class Workload {
  readonly ref = Buffer.alloc(SIZE);
  readonly snaps: Array<{ name: string; data: Buffer }> = [];
  private seq = 0;

  constructor(private readonly t: ExecutionContext) {}

  async write(pool: Pool): Promise<void> {
    const off = ((this.seq * 7919) % 240) * 4096;
    const data = pattern(++this.seq, 3 * 4096 + 100);
    await pool.vdisk('/d').write(off, data);
    data.copy(this.ref, off);
  }

  async snapshot(pool: Pool, name: string): Promise<void> {
    await pool.snapshots.create('/d', name);
    this.snaps.push({ name, data: Buffer.from(this.ref) });
  }

  /** /d created and written 40 times, a snapshot every 10th write. */
  async populate(pool: Pool): Promise<void> {
    await pool.createFile('/d', 0o644, 0, 0, SIZE);
    for (let i = 0; i < 40; i++) {
      await this.write(pool);
      if (i % 10 === 9) await this.snapshot(pool, `s${i}`);
    }
  }

  /** Writes (each read back whole, a snapshot at the 5th) while the job runs: at least 10, at most 20. */
  async during(pool: Pool, running: () => boolean, what: string): Promise<number> {
    let n = 0;
    // a bounded number: each write makes new objects the job's next pass lists
    while (n < 10 || (running() && n < 20)) {
      await this.write(pool);
      this.t.true((await pool.vdisk('/d').read(0, SIZE)).equals(this.ref), `reads right during the ${what}`);
      if (++n === 5) await this.snapshot(pool, 'mid');
    }
    return n;
  }

  async checkEveryByte(pool: Pool, how: string): Promise<void> {
    this.t.true((await pool.vdisk('/d').read(0, SIZE)).equals(this.ref), `the head, ${how}`);
    for (const s of this.snaps) {
      await pool.snapshots.clone('/d', s.name, `/v-${s.name}`);
      this.t.true((await pool.vdisk(`/v-${s.name}`).read(0, SIZE)).equals(s.data), `snapshot ${s.name}, ${how}`);
    }
  }
}

test('rekey on S3: writes and snapshots go on during the rotation; every object ends under the new key, which alone reads every byte', async (t) => {
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const url = s3.url('rekey', 'vp');
  const w = new Workload(t);
  let pool = await env.open({ backend: await openBackend(url, { encryptionKey: A }) });
  await w.populate(pool);
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  const store = (await openBackend(url, { encryptionKey: B, oldKeys: [A] })) as EncryptedBlobStore;
  pool = await env.open({ backend: store });
  const job = new RekeyJob({ store, gate: (what) => pool.backendGate!(what) });
  const done = job.start();
  const during = await w.during(pool, () => job.status().state === 'running', 'rotation');
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
  await w.checkEveryByte(pool, 'with B alone');
  t.log(`${st.rewritten} objects rewritten in ${st.pass} passes while ${during} writes went on; ${keys.length} objects under key B; ${w.snaps.length} snapshots read right`);
  await env.close(pool);
});

test('backend move from file:// to S3, encrypted: writes and snapshots go on; the bucket alone then reads every byte', async (t) => {
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const url = s3.url('moved', 'vp');
  const w = new Workload(t);
  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  await w.populate(pool);
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  fs.mkdirSync(env.state, { recursive: true });
  const moving = await openMove(env.backendUrl, url, env.state);
  pool = await env.open({ backend: await openBackendOn(moving.store, { encryptionKey: A }) });
  const job = new MoveJob({ mirror: moving.mirror!, stateDir: env.state, gate: (what) => pool.backendGate!(what) });
  const done = job.start();
  const during = await w.during(pool, () => job.status().state === 'running', 'move');
  const st = await done;
  t.is(st.state, 'done', String(st.error));
  await w.write(pool);
  await w.snapshot(pool, 'after');
  await env.close(pool);

  t.deepEqual(listFiles(env.backendDir), ['moved.json']);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(url, { encryptionKey: A }) });
  await w.checkEveryByte(pool, 'from the bucket alone');
  t.log(`${st.copied} objects copied (${st.bytesCopied} bytes) in ${st.pass} passes while ${during} writes went on; ${st.drained} drained from file://; ${w.snaps.length} snapshots read right`);
  await env.close(pool);
});
