/**
 * Two policy updates one after the other while I/O runs (issue 12, docs/scrubbing.md "Policy updates"): an
 * encrypted vPool on backend X under key A rotates to key B (the rekey job runs while a loop writes, reads
 * against the reference, snapshots, clones and scrubs), then moves to backend Y (the move job runs while the
 * same loop goes on). Then X holds only `moved.json`, every object in Y is under key B, and Y alone with B
 * alone, on a fresh state directory, reads every byte of every vDisk, clone and snapshot as the reference.
 * Seeded (`VPOOLFS_SEED` replays; `VPOOLFS_POLICY_OPS` more ops per phase).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { HEADER_SIZE, keyIdOf, parseHeader } from '../volume/backend/crypto-format.js';
import type { EncryptedBlobStore } from '../volume/backend/encrypted-store.js';
import { ENCRYPTION_MARKER, openBackend, openBackendOn } from '../volume/backend/open-backend.js';
import { MoveJob, openMove } from '../volume/policy/move-job.js';
import { RekeyJob } from '../volume/policy/rekey-job.js';
import { setLogLevel } from '../util/log.js';
import type { VPool } from '../volume/types.js';
import { checkAll, randomOp, rng, seedModel, type Model } from './helpers/policy-model.js';
import { listFiles, poolEnv } from './helpers/vpool.js';
import { seeded } from './helpers/seed.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const OPS = Number(process.env.VPOOLFS_POLICY_OPS ?? 30);
const A = Buffer.alloc(32, 0xa1);
const B = Buffer.alloc(32, 0xb2);

/** Runs `job` while a loop of random ops goes on (at least OPS of them); returns the job's outcome and the ops done. */
async function whileIo<T>(t: Parameters<typeof randomOp>[0], pool: VPool, m: Model, rand: () => number, job: () => Promise<T>): Promise<{ out: T; ops: number }> {
  let running = true;
  const io = (async () => {
    let n = 0;
    while (running || n < OPS) {
      await randomOp(t, pool, m, rand, true);
      n++;
    }
    return n;
  })();
  let out: T;
  try {
    out = await job();
  } finally {
    running = false;
  }
  return { out, ops: await io };
}

test('key rotation then backend move, each while I/O, snapshots, clones and scrubs go on: Y alone with the new key alone reads every byte', async (t) => {
  const { seed, rand } = seeded(t);
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const m: Model = { disks: new Map(), snaps: new Map(), n: 0 };
  const yDir = path.join(env.root, 'y');
  const yUrl = `file://${yDir}`;

  // under A on X
  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  await seedModel(t, pool, m, rand, OPS);
  await env.close(pool);

  // the rotation, while I/O goes on
  fs.rmSync(env.state, { recursive: true, force: true });
  const rotating = (await openBackend(env.backendUrl, { encryptionKey: B, oldKeys: [A] })) as EncryptedBlobStore;
  pool = await env.open({ backend: rotating });
  const p1 = pool;
  const rekey = await whileIo(t, pool, m, rng(seed ^ 1), () => new RekeyJob({ store: rotating, gate: (w) => p1.backendGate!(w), localDir: env.state }).start());
  t.is(rekey.out.state, 'done', String(rekey.out.error));
  t.log(`rotation: ${rekey.out.rewritten} objects rewritten under B in ${rekey.out.pass} passes, ${rekey.ops} ops meanwhile`);
  await env.close(pool);

  // the move, while I/O goes on (B alone now: the rotation is finished)
  fs.rmSync(env.state, { recursive: true, force: true });
  fs.mkdirSync(env.state, { recursive: true });
  const moving = await openMove(env.backendUrl, yUrl, env.state);
  pool = await env.open({ backend: await openBackendOn(moving.store, { encryptionKey: B }) });
  const p2 = pool;
  const move = await whileIo(t, pool, m, rng(seed ^ 2), () => new MoveJob({ mirror: moving.mirror!, stateDir: env.state, gate: (w) => p2.backendGate!(w) }).start());
  t.is(move.out.state, 'done', String(move.out.error));
  t.log(`move: ${move.out.copied} objects copied in ${move.out.pass} passes, ${move.out.drained} drained from X, ${move.ops} ops meanwhile`);
  for (let i = 0; i < 10; i++) await randomOp(t, pool, m, rand, true);
  await env.close(pool);

  t.deepEqual(listFiles(env.backendDir), ['moved.json'], 'X holds only moved.json');
  const idB = keyIdOf(B).toString('hex');
  const files = listFiles(yDir).filter((f) => f !== ENCRYPTION_MARKER);
  for (const f of files) {
    const fd = fs.openSync(path.join(yDir, f), 'r');
    const raw = Buffer.alloc(HEADER_SIZE);
    fs.readSync(fd, raw, 0, HEADER_SIZE, 0);
    fs.closeSync(fd);
    const h = parseHeader(raw);
    if (!(typeof h === 'object' && h.keyId.toString('hex') === idB)) t.fail(`${f}: ${typeof h === 'object' ? `key id ${h.keyId.toString('hex')}` : h}`);
  }
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(yUrl, { encryptionKey: B }) });
  const bytes = await checkAll(t, pool, m);
  t.log(`${files.length} objects in Y, all under B; ${m.disks.size} vDisks and ${[...m.snaps.values()].reduce((n, s) => n + s.size, 0)} snapshots (${bytes} bytes) read right from Y with B alone`);
  await env.close(pool);
});
