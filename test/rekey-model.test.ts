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
import { keyIdOf, parseHeader, HEADER_SIZE } from '../volume/backend/crypto-format.js';
import { EncryptedBlobStore, EncryptionError } from '../volume/backend/encrypted-store.js';
import { ENCRYPTION_MARKER, openBackend } from '../volume/backend/open-backend.js';
import { RekeyJob, type RekeyStatus } from '../volume/policy/rekey-job.js';
import type { VPool } from '../volume/types.js';
import { setLogLevel } from '../util/log.js';
import { RefDisk } from './helpers/ref-disk.js';
import { listFiles, pattern, poolEnv } from './helpers/vpool.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const A = Buffer.alloc(32, 0xa1);
const B = Buffer.alloc(32, 0xb2);
const OPS = Number(process.env.VPOOLFS_REKEY_OPS ?? 40);

/** mulberry32: a small seeded generator. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Model {
  disks: Map<string, RefDisk>;
  /** vDisk path → snapshot name → the reference as of that snapshot. */
  snaps: Map<string, Map<string, RefDisk>>;
  n: number;
}

function copyRef(r: RefDisk): RefDisk {
  const c = new RefDisk();
  c.resize(r.size);
  for (const [a, buf] of r.clusters) c.clusters.set(a, Buffer.from(buf));
  return c;
}

/** One random op on the vPool and the model; reads are checked against the reference. */
async function randomOp(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void }, pool: VPool, m: Model, rand: () => number, scrub: boolean): Promise<void> {
  const paths = [...m.disks.keys()];
  const p = paths[Math.floor(rand() * paths.length)];
  const ref = m.disks.get(p)!;
  const r = rand();
  if (r < 0.5) {
    const off = Math.floor(rand() * 200) * 1024;
    const len = 1 + Math.floor(rand() * 40_000);
    const data = pattern(Math.floor(rand() * 2 ** 31), len);
    await pool.vdisk(p).write(off, data);
    ref.write(off, data);
  } else if (r < 0.7) {
    const off = Math.floor(rand() * ref.size);
    const len = Math.min(ref.size - off, 1 + Math.floor(rand() * 60_000));
    const got = await pool.vdisk(p).read(off, len);
    t.true(got.equals(ref.read(off, len)), `${p} [${off}, +${len}) reads as the reference`);
  } else if (r < 0.82) {
    const name = `s${++m.n}`;
    await pool.snapshots.create(p, name);
    m.snaps.get(p)!.set(name, copyRef(ref));
  } else if (r < 0.9) {
    const names = [...m.snaps.get(p)!.keys()];
    if (names.length === 0 || m.disks.size > 10) return;
    const name = names[Math.floor(rand() * names.length)];
    const target = `/c${++m.n}`;
    await pool.snapshots.clone(p, name, target);
    m.disks.set(target, copyRef(m.snaps.get(p)!.get(name)!));
    m.snaps.set(target, new Map());
  } else if (r < 0.95) {
    const names = [...m.snaps.get(p)!.keys()];
    if (names.length < 2) return;
    const name = names[Math.floor(rand() * names.length)];
    try {
      await pool.snapshots.remove(p, name);
      m.snaps.get(p)!.delete(name);
    } catch (err) {
      if (!(err as { code?: string }).code?.includes('BUSY')) throw err; // a snapshot with clones stays
    }
  } else if (scrub) {
    await pool.scrub.scrub(p);
  }
}

async function checkAll(t: { true: (v: boolean, m?: string) => void }, pool: VPool, m: Model): Promise<number> {
  let bytes = 0;
  for (const [p, ref] of m.disks) {
    const v = pool.vdisk(p);
    t.true(v.size === ref.size, `${p}: size ${v.size}, reference ${ref.size}`);
    t.true((await v.read(0, ref.size)).equals(ref.read(0, ref.size)), `${p}: every byte`);
    bytes += ref.size;
    for (const [name, sref] of m.snaps.get(p)!) {
      const target = `/verify-${++m.n}`;
      await pool.snapshots.clone(p, name, target);
      const c = pool.vdisk(target);
      t.true(c.size === sref.size && (await c.read(0, sref.size)).equals(sref.read(0, sref.size)), `${p}@${name}: every byte`);
      bytes += sref.size;
    }
  }
  return bytes;
}

test('rekey: random I/O, snapshots, clones and scrubs while rotating; a job killed half-way resumes; then the new key alone reads every byte', async (t) => {
  const seed = Number(process.env.VPOOLFS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (VPOOLFS_SEED=${seed} replays)`);
  const rand = rng(seed);
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const m: Model = { disks: new Map(), snaps: new Map(), n: 0 };

  // 1. under key A
  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  for (const p of ['/a', '/b']) {
    await pool.createFile(p, 0o644, 0, 0, 256 * 1024);
    const r = new RefDisk();
    r.resize(256 * 1024);
    m.disks.set(p, r);
    m.snaps.set(p, new Map());
  }
  for (let i = 0; i < OPS; i++) await randomOp(t, pool, m, rand, true);
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
  let running = true;
  const ioRand = rng(seed ^ 0x5eed);
  const io = (async () => {
    let n = 0;
    while (running || n < OPS) {
      await randomOp(t, pool, m, ioRand, true);
      n++;
    }
    return n;
  })();
  const first = await job.start();
  t.is(first.state, 'failed', 'the job died at its checkpoint');
  t.true(first.error?.includes('killed at object'), String(first.error));
  const progress = first.rewritten;
  let last: RekeyStatus;
  try {
    last = await job.start();
  } finally {
    running = false;
  }
  const ops = await io;
  t.log(`first run rewrote ${progress} objects before it died; the second: ${last.rewritten} objects (${last.bytesRewritten} bytes) in ${last.pass} passes, ${last.gone} deleted meanwhile; ${ops} ops during the rotation`);
  t.is(last.state, 'done', String(last.error));
  t.deepEqual(last.retiring, []);
  t.true(last.rewritten > 0);
  for (let i = 0; i < 10; i++) await randomOp(t, pool, m, ioRand, true);
  await env.close(pool);

  // 3. no object under A remains; B alone reads every byte
  const files = listFiles(env.backendDir).filter((f) => f !== ENCRYPTION_MARKER);
  t.true(files.some((f) => f.includes('/sco/')) && files.some((f) => f.includes('/tlog/')));
  for (const f of files) {
    const fd = fs.openSync(path.join(env.backendDir, f), 'r');
    const raw = Buffer.alloc(HEADER_SIZE);
    fs.readSync(fd, raw, 0, HEADER_SIZE, 0);
    fs.closeSync(fd);
    const h = parseHeader(raw);
    t.true(typeof h === 'object' && h.keyId.toString('hex') === idB, `${f}: ${typeof h === 'object' ? `key id ${h.keyId.toString('hex')}` : h}`);
  }
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(env.backendDir, ENCRYPTION_MARKER), 'utf8')), { format: 'vpoolfs-aes-256-gcm-chunked-1', keyId: idB });
  await refuse({ encryptionKey: A }, 'WRONG_KEY');
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: B }) });
  const bytes = await checkAll(t, pool, m);
  t.log(`${files.length} objects, all under key id ${idB}; ${m.disks.size} vDisks and ${[...m.snaps.values()].reduce((n, s) => n + s.size, 0)} snapshots (${bytes} bytes) read right with the new key alone`);
  await env.close(pool);
});
