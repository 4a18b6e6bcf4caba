/**
 * Scrubbing on the s3:// backend (a real Ceph radosgw started for this file), encrypted (a key file read
 * the way `--encryption-key-file` reads it), issue 12's "the same on the S3 backend and encrypted":
 * - the owner scrubs a vDisk that took random overwrites with snapshots, one of them deleted;
 * - `vpoolfs scrub --backend s3://… --scratch DIR --encryption-key-file F` in another process (the "other
 *   host") leaves a result that the owner applies.
 * Each time: every byte of the head and of every kept snapshot equals the reference (seeded: VPOOLFS_SEED
 * replays), the vDisk holds fewer backend bytes than before, a `gc --dry-run` (sweep dry run) finds nothing
 * left behind, and a rebuild from the bucket alone (fresh state directory) reads the same. The owner's run
 * also checks that `scrub.lastRun` survives a restart of the vPool (kept in the metadata store) and a rebuild
 * from the bucket alone (its copy in the backend).
 * VPOOLFS_S3_SCRUB_ROUNDS=N runs each test N times (seeds seed, seed+1, …).
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { setLogLevel } from '../util/log.js';
import { openBackend, readKeyFile } from '../volume/backend/open-backend.js';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { CLI, ok, q, sh } from './helpers/mount.js';
import { pattern, RefDisk, rng } from './helpers/ref-disk.js';
import { bytesUnder, pointData, sameAsRef } from './helpers/scrub-check.js';
import { useS3Server } from './helpers/s3-server.js';
import { CS, poolEnv, type PoolEnv } from './helpers/vpool.js';
import { runSeed } from './helpers/seed.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const s3 = useS3Server('scrub');
const CLUSTERS = 128; // a 512 KiB vDisk: 8-cluster SCOs, so overwrites leave many SCOs under the fill ratio
const WRITES = 60;
const SNAP_EVERY = 12;

const ROUNDS = Number(process.env.VPOOLFS_S3_SCRUB_ROUNDS ?? 1);

/** Runs `body` ROUNDS times, with seeds from VPOOLFS_SEED (or a random one) up; the seed of each round is logged. */
async function rounds(t: ExecutionContext, body: (seed: number, round: number) => Promise<void>): Promise<void> {
  const first = runSeed();
  for (let round = 0; round < ROUNDS; round++) {
    const seed = first + round;
    t.log(`round ${round}: seed ${seed} (VPOOLFS_SEED=${seed} replays it)`);
    await body(seed, round);
  }
}

/** A 32-byte key in a hex key file, and that file read back the way the CLI's --encryption-key-file reads it. */
async function keyFile(env: PoolEnv): Promise<{ file: string; key: Buffer }> {
  const file = path.join(env.root, 'key');
  fs.writeFileSync(file, `${Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('hex')}\n`, { mode: 0o600 });
  return { file, key: await readKeyFile(file) };
}

interface Workload {
  ref: RefDisk;
  /** The reference of every kept snapshot, by name. */
  snaps: Map<string, RefDisk>;
  deleted: string;
  /** /clone, made from the first snapshot: it reads the parent's SCOs, which the scrub must keep for it. */
  clone: RefDisk;
}

/**
 * Random overwrites (a hot quarter takes most) with a snapshot every SNAP_EVERY writes, a clone of the first
 * snapshot (clone parents: its base pins SCOs the parent overwrites later); the second snapshot is deleted.
 */
async function churn(pool: VPool, seed: number): Promise<Workload> {
  const r = rng(seed);
  await pool.createFile('/d', 0o644, 0, 0, CLUSTERS * CS);
  const v = pool.vdisk('/d');
  const ref = new RefDisk();
  ref.resize(CLUSTERS * CS);
  const snaps = new Map<string, RefDisk>();
  for (let i = 0; i < WRITES; i++) {
    const n = 1 + Math.floor(r() * 4);
    const a = r() < 0.7 ? Math.floor(r() * (CLUSTERS / 4 - n)) : Math.floor(r() * (CLUSTERS - n));
    const data = pattern(seed, i, n * CS);
    await v.write(a * CS, data);
    ref.write(a * CS, data);
    if (i % SNAP_EVERY === SNAP_EVERY - 1) {
      const name = `s${i}`;
      await pool.snapshots.create('/d', name);
      snaps.set(name, ref.clone());
      if (snaps.size === 1) await pool.snapshots.clone('/d', name, '/clone');
    }
  }
  const deleted = [...snaps.keys()][1];
  await pool.snapshots.remove('/d', deleted);
  snaps.delete(deleted);
  await pool.syncToBackend();
  return { ref, snaps, deleted, clone: [...snaps.values()][0].clone() };
}

/** Head and kept snapshots, from the backend alone (scrub-check.ts) and through the vPool's read path. */
async function checkAll(t: ExecutionContext, pool: VPool, w: Workload, when: string): Promise<void> {
  const v = pool.vdisk('/d') as VDiskImpl;
  t.true((await v.read(0, CLUSTERS * CS)).equals(w.ref.read(0, CLUSTERS * CS)), `${when}: the head reads as the reference`);
  const kept = v.docs.doc.snapshots.map((s) => s.name).sort();
  t.deepEqual(kept, [...w.snaps.keys()].sort(), `${when}: the kept snapshots, ${w.deleted} gone`);
  for (const s of v.docs.doc.snapshots) {
    t.true(sameAsRef(await pointData(v.ctx.backend, v.id, v.docs.doc, s.tlog), w.snaps.get(s.name)!), `${when}: snapshot ${s.name} (backend) reads as the reference`);
  }
  t.true((await pool.vdisk('/clone').read(0, CLUSTERS * CS)).equals(w.clone.read(0, CLUSTERS * CS)), `${when}: the clone reads as the reference`);
}

/** After the scrub: fewer bytes, nothing for gc, the same data; then a rebuild from the bucket alone reads the same. */
async function afterScrub(t: ExecutionContext, env: PoolEnv, pool: VPool, w: Workload, url: string, key: Buffer, before: number): Promise<void> {
  const v = pool.vdisk('/d') as VDiskImpl;
  const after = await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`);
  t.log(`backend bytes of the vDisk: ${before} before the scrub, ${after} after`);
  t.true(after < before, 'the vDisk holds fewer backend bytes');
  t.deepEqual(await pool.scrub.sweep('/d', true), [], 'gc --dry-run finds nothing left behind');
  t.deepEqual(await pool.scrub.sweep('/clone', true), [], 'nor for the clone');
  await checkAll(t, pool, w, 'after the scrub');
  const run = pool.scrub.statusAt('/d').lastRun;
  t.is(run?.outcome, 'applied');
  await env.close(pool);

  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
  await checkAll(t, pool, w, 'rebuilt from the bucket');
  t.deepEqual(pool.scrub.statusAt('/d').lastRun, run, 'lastRun survives a rebuild on a fresh state directory (its copy in the backend)');
  for (const [name, want] of w.snaps) {
    await pool.snapshots.clone('/d', name, `/c-${name}`);
    t.true((await pool.vdisk(`/c-${name}`).read(0, CLUSTERS * CS)).equals(want.read(0, CLUSTERS * CS)), `rebuilt: a clone of ${name} reads as the reference`);
  }
  await env.close(pool);
}

test('owner scrub on S3, encrypted: every byte as the reference, fewer backend bytes, nothing for gc, a rebuild reads the same; lastRun survives a restart', async (t) => {
  await rounds(t, async (seed, round) => {
    const env = poolEnv(t);
    const { key } = await keyFile(env);
    const url = s3.url('owner', `vp${round}`);
    let pool = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
    const w = await churn(pool, seed);
    const v = pool.vdisk('/d') as VDiskImpl;
    const before = await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`);
    const rep = await pool.scrub.scrub('/d');
    t.is(rep.outcome, 'applied');
    t.true(rep.swept.bytes > 0, `the sweep freed ${rep.swept.bytes} bytes (${rep.swept.objects} objects)`);
    const run = pool.scrub.statusAt('/d').lastRun;
    t.is(run?.outcome, 'applied');
    t.is(run?.freedBytes, rep.swept.bytes);

    // a restart (same state directory): user.vdisk.info's scrub.lastRun is still there
    await env.close(pool);
    pool = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
    t.deepEqual(pool.scrub.statusAt('/d').lastRun, run, 'lastRun survives a restart');
    await afterScrub(t, env, pool, w, url, key, before);
  });
});

test('remote scrub on S3, encrypted (vpoolfs scrub --backend --scratch --encryption-key-file), applied by the owner', async (t) => {
  await rounds(t, async (seed, round) => {
    const env = poolEnv(t);
    const { file, key } = await keyFile(env);
    const url = s3.url('remote', `vp${round}`);
    const pool = await env.open({ backend: await openBackend(url, { encryptionKey: key }) });
    const w = await churn(pool, seed);
    const v = pool.vdisk('/d') as VDiskImpl;
    const before = await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`);

    // the other host: its own process, the bucket and the key file only (the AWS credentials are in the environment)
    const remote = `node ${q(CLI)} scrub --backend ${q(url)} --scratch ${q(path.join(env.root, 'scratch'))}`;
    // without the key, or with another one, it refuses before it writes anything
    const wrongKey = path.join(env.root, 'wrong-key');
    fs.writeFileSync(wrongKey, Buffer.alloc(32, 0x5a));
    for (const args of ['', `--encryption-key-file ${q(wrongKey)}`]) {
      const r = await sh(`${remote} ${args}`, { timeoutMs: 120_000 });
      t.not(r.code, 0, `scrub --backend ${args || 'without a key'} fails`);
      t.regex(r.stderr, /is encrypted/, 'and says why');
      t.log(`scrub --backend ${args ? 'with another key' : 'without a key'}: ${r.stderr.trim().split('\n')[0]}`);
    }
    t.is(await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`), before, 'the refused runs wrote nothing');
    // every vDisk of the bucket's tree (the vDisk and its clone)
    const out = await ok(t, `${remote} --encryption-key-file ${q(file)}`, 120_000);
    t.regex(out, new RegExp(`^${v.id}: result \\S+; read .* to free once applied`, 'm'));
    t.regex(out, new RegExp(`^${pool.vdisk('/clone').info().id}: `, 'm'), 'the clone too');
    t.true(await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`) > before, 'the remote job only added objects (it deletes nothing)');
    await checkAll(t, pool, w, 'before the apply');
    // the owner goes on after the job ran: writes and a snapshot past its horizon leave the result valid
    for (let i = 0; i < 6; i++) {
      const data = pattern(seed, WRITES + i, 2 * CS);
      await v.write(i * 3 * CS, data);
      w.ref.write(i * 3 * CS, data);
    }
    await pool.snapshots.create('/d', 'late');
    w.snaps.set('late', w.ref.clone());
    await pool.syncToBackend();

    const rep = await pool.scrub.applyPending('/d');
    t.is(rep?.outcome, 'applied');
    t.true((rep?.swept.bytes ?? 0) > 0, 'the apply swept what the remote result freed');
    t.is(await pool.scrub.applyPending('/d'), null, 'nothing left to apply');
    const crep = await pool.scrub.applyPending('/clone');
    t.log(`the clone's remote result: ${crep?.outcome ?? 'none'}`);
    await afterScrub(t, env, pool, w, url, key, before);
  });
});
