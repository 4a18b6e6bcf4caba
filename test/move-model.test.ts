/**
 * Moving a vPool to another backend, in-process over file:// backends (docs/scrubbing.md, "Policy updates"),
 * seeded (`VPOOLFS_SEED` replays; `VPOOLFS_MOVE_OPS` more ops per phase):
 * 1. on backend X: random writes, snapshots, clones of snapshots, snapshot deletes and scrubs;
 * 2. reopened (fresh state directory, small read cache: reads go to the backend) on the mirror of X and Y: the
 *    move job runs while a second loop keeps writing, reading (checked against the reference), snapshotting,
 *    cloning and scrubbing (the sweeps delete objects under the job's feet); the job dies at a random object
 *    (its checkpoint throws), is started again, copies, switches and drains X; more ops after the switch;
 * 3. X holds only `moved.json` and refuses to open; a finished move opens Y alone, also after a crash that
 *    left X undrained and the state directory without its record (it drains X first); a move onto itself or
 *    onto a backend that holds something else is refused; Y alone, on a fresh state directory, reads every
 *    byte of every vDisk, clone and snapshot as the reference says.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openBackend, openBackendOn } from '../volume/backend/open-backend.js';
import { MoveJob, openMove } from '../volume/policy/move-job.js';
import { setLogLevel } from '../util/log.js';
import { checkAll, dieThenFinish, randomOp, rng, seedModel, type Model } from './helpers/policy-model.js';
import { listFiles, poolEnv } from './helpers/vpool.js';
import { seeded } from './helpers/seed.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const OPS = Number(process.env.VPOOLFS_MOVE_OPS ?? 40);

test('move: random I/O, snapshots, clones and scrubs while moving; a job killed half-way starts over; then the new backend alone reads every byte', async (t) => {
  const { seed, rand } = seeded(t);
  const env = poolEnv(t, { readCacheBytes: 2 ** 20 });
  const m: Model = { disks: new Map(), snaps: new Map(), n: 0 };
  const yDir = path.join(env.root, 'y');
  const yUrl = `file://${yDir}`;

  // 1. on X
  let pool = await env.open();
  await seedModel(t, pool, m, rand, OPS);
  await env.close(pool);

  // 2. on the mirror; the job dies once, then copies and switches
  fs.rmSync(env.state, { recursive: true, force: true });
  fs.mkdirSync(env.state, { recursive: true });
  const moving = await openMove(env.backendUrl, yUrl, env.state);
  t.truthy(moving.mirror);
  pool = await env.open({ backend: await openBackendOn(moving.store) }); // as the mount does: the encryption marker checks over the mirror
  const killAt = 1 + Math.floor(rand() * 20);
  let seen = 0;
  const job = new MoveJob({
    mirror: moving.mirror!,
    stateDir: env.state,
    gate: (w) => pool.backendGate!(w),
    checkpoint: async () => {
      if (++seen === killAt) throw new Error(`killed at object ${killAt}`);
    },
  });
  const ioRand = rng(seed ^ 0x30e);
  const { first, last, ops } = await dieThenFinish(t, pool, m, ioRand, job, OPS);
  t.is(last.state, 'done', String(last.error));
  t.true(moving.mirror!.moved);
  t.log(`first run copied ${first.copied} objects before it died; the second: ${last.copied} copied (${last.bytesCopied} bytes), ${last.deleted} deleted from Y, in ${last.pass} passes, ${last.drained} drained from X; ${ops} ops during the move`);
  for (let i = 0; i < 10; i++) await randomOp(t, pool, m, ioRand, true);
  await env.close(pool);

  // 3. X drained and refused; Y alone reads every byte
  t.deepEqual(listFiles(env.backendDir), ['moved.json']);
  const err = await t.throwsAsync(openBackend(env.backendUrl));
  t.regex(String(err), /was moved to file:\/\//);
  const again = await openMove(env.backendUrl, yUrl, env.state);
  t.is(again.mirror, null, 'a finished move opens Y alone');
  await again.store.close();
  // a crash after moved.json reached X but before the state directory's record and the drain: the next
  // mount with moveFrom finds moved.json, drains what is left and opens Y alone
  fs.rmSync(path.join(env.state, 'move.json'));
  fs.mkdirSync(path.join(env.backendDir, 'vdisks', 'left'), { recursive: true });
  fs.writeFileSync(path.join(env.backendDir, 'vdisks', 'left', 'over'), 'an object the drain had not reached');
  const resumed = await openMove(env.backendUrl, yUrl, env.state);
  t.is(resumed.mirror, null, 'moved.json in X: Y alone');
  await resumed.store.close();
  t.deepEqual(listFiles(env.backendDir), ['moved.json']);
  await t.throwsAsync(openMove(yUrl, yUrl, env.state), { message: /same backend/ });
  await t.throwsAsync(openMove(`file://${env.root}/z`, yUrl, env.state), { message: /moved to|not empty/ });
  fs.rmSync(path.join(env.state, 'move.json'));
  await t.throwsAsync(openMove(`file://${env.root}/z`, yUrl, env.state), { message: /is not empty .* not the target of this move/ }, 'a Y holding a vPool is never a move target');
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(yUrl) });
  const bytes = await checkAll(t, pool, m);
  t.log(`${listFiles(yDir).length} objects in Y; ${m.disks.size} vDisks and ${[...m.snaps.values()].reduce((n, s) => n + s.size, 0)} snapshots (${bytes} bytes) read right from Y alone`);
  await env.close(pool);
});
