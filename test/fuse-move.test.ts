/**
 * Moving a vPool to another backend through real daemons and a real FUSE mount (docs/scrubbing.md, "Policy
 * updates"), encrypted (objects move as stored bytes), seeded (`VPOOLFS_SEED` replays):
 * - on backend X: vDisks written, snapshots and a clone (small SCOs: a few hundred objects);
 * - mounted with `--backend Y --move-from X` and a budget of 40 objects/s: the move job starts by itself;
 *   writes and snapshots go on; the daemon is killed with SIGKILL half-way (GET /v1/backend-move says so);
 * - mounted again the same way: the job starts over, `vpoolfs backend-move` waits for the copy and the switch;
 *   writes go on before and after the switch;
 * - then X holds only its `moved.json` and refuses to mount; Y alone, on a fresh state directory (everything
 *   read from the backend), reads every byte of every vDisk, the clone and every snapshot as the reference.
 */
import fs from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { api, apiOf } from './helpers/api.js';
import { CLI, freshLayout, fuseTest, logEntries, MountHandle, ok, q, startMount } from './helpers/mount.js';
import { listFiles } from './helpers/vpool.js';
import { MountWorkload } from './helpers/mount-workload.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();
const SIZE = 2 * 2 ** 20;


test('backend move on a real mount: I/O goes on, kill -9 half-way, resumed and switched, then the new backend alone reads every byte', async (t) => {
  const { rand } = seeded(t);
  const l = await freshLayout(t);
  const xDir = path.join(l.root, 'x');
  const yDir = path.join(l.root, 'y');
  const key = path.join(l.root, 'k.key');
  const config = path.join(l.root, 'config.json');
  await writeFile(key, Buffer.alloc(32, 0x6c).toString('hex'));
  await writeFile(config, JSON.stringify({ scoClusters: 8, tlogScos: 4, moveObjectsPerSecond: 40, encryptionKeyFile: key }));
  const onX = { mountpoint: l.mountpoint, state: l.state, backend: `file://${xDir}`, extraArgs: ['--config', config] };
  const moving = { ...onX, backend: `file://${yDir}`, extraArgs: ['--config', config, '--move-from', `file://${xDir}`] };
  const target = apiOf(l.state);

  const w = new MountWorkload(t, rand, target, SIZE);
  const { ref, snaps } = w;

  // 1. on X
  const m1 = await startMount(t, onX);
  await w.populate(m1.mountpoint);
  t.is(await m1.stop(), 0, m1.log);
  const objects = listFiles(xDir).length;
  t.log(`${objects} objects in X`);

  // 2. moving: the job starts by itself; I/O goes on; kill -9 half-way
  const m2 = await startMount(t, moving);
  const st = (await api(target, 'GET', '/v1/backend-move')).body;
  t.true(st.moving, JSON.stringify(st));
  const { job, writes } = await w.untilThirdDone(m2.mountpoint, '/v1/backend-move', 'copied', objects);
  await m2.kill9();
  t.log(`killed with ${job.copied} of ${job.listed} objects copied, after ${writes} writes`);

  // 3. again: the job starts over and switches; `vpoolfs backend-move` waits for it
  const m3 = await startMount(t, moving);
  const cli = ok(t, `node ${q(CLI)} backend-move ${q(m3.mountpoint)}`, 300_000);
  const more = await w.whileRunning(m3.mountpoint, '/v1/backend-move');
  const out = await cli;
  t.regex(out, /move done: .*switched/, out);
  t.is(logEntries(m3.log, /^move: done/).length, 1, m3.log);
  for (let i = 0; i < 6; i++) w.write(m3.mountpoint, ['d1', 'd2', 'c1'][i % 3]); // after the switch: Y alone
  await w.snapshot('d2');
  t.is(await m3.stop(), 0, m3.log);

  // 4. X is drained and refuses; Y alone reads every byte, from the backend
  t.deepEqual(listFiles(xDir), ['moved.json']);
  const refused = new MountHandle({ ...onX, readyMs: 60_000 });
  const exit = await refused.exited;
  t.is(exit.code, 1, refused.log);
  t.regex(refused.log, /was moved to file:\/\/.*\/y/);
  fs.rmSync(l.state, { recursive: true, force: true });
  const m4 = await startMount(t, { ...onX, backend: `file://${yDir}` });
  await w.checkEveryByte(m4.mountpoint);
  t.log(`${listFiles(yDir).length} objects in Y; ${ref.size} vDisks and ${snaps.length} snapshots read right from Y alone; ${writes + more + 6} writes during the move`);
  t.is(await m4.stop(), 0, m4.log);
});
