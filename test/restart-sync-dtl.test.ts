/**
 * Sync DTL, power cut of the router, local restart: the write cache kept only what was fdatasynced, the
 * DTL server (a real one, in a child process, not cut) has every acknowledged write. The restart must
 * replay the DTL entries the write cache does not hold whole before serving (DESIGN §4: with sync DTL,
 * every acknowledged write survives a power cut). Deterministic, in-process (helpers/faulty-pool.ts);
 * the real thing through a mount on a loop device is powercut-vdisk.test.ts "sync DTL".
 */
import test from 'ava';
import path from 'node:path';
import { dtlProvider } from '../dtl-client/provider.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { until } from './helpers/until.js';
import { powerCutRig } from './helpers/faulty-pool.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { pattern } from './helpers/vpool.js';

const CS = 4096;

test('sync DTL: after a power cut a local restart replays the acknowledged writes the write cache lost (also a growing one)', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = () => dtlProvider({ servers: [server.address], defaultMode: 'sync', router: 'r', retryMs: 100, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl() });
  boot.backend.pause(); // nothing reaches the backend: only the write cache and the DTL hold the writes
  await boot.pool.createFile('/d', 0o644, 0, 0, 32 * CS);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  const want = Buffer.alloc(40 * CS);
  const a = pattern(1, 4 * CS);
  await v.write(0, a);
  a.copy(want, 0);
  await v.sync(); // durable locally
  const b = pattern(2, 12 * CS); // acknowledged after the DTL has it, never fdatasynced locally (SCOs close)
  await v.write(2 * CS, b);
  b.copy(want, 2 * CS);
  const c = pattern(3, 2 * CS); // a growing write
  await v.write(38 * CS, c);
  c.copy(want, 38 * CS);
  rig.cut(boot);
  v.dtl.close(false); // the cut router's connection goes (its process would be gone)

  const boot2 = await rig.open({ dtl: dtl() });
  boot2.backend.pause();
  const v2 = boot2.pool.vdisk('/d');
  t.is(v2.size, 40 * CS, 'the growing write acknowledged before the cut');
  t.deepEqual(await v2.read(0, 40 * CS), want, 'every acknowledged write is there');
  // the replay was made durable locally before serving: another cut, no DTL, still there
  rig.cut(boot2);
  (v2 as VDiskImpl).dtl.close(false);
  await server.kill9();
  const boot3 = await rig.open();
  const v3 = boot3.pool.vdisk('/d');
  t.deepEqual(await v3.read(0, 40 * CS), want, 'the replayed writes survive the next power cut');
  boot3.backend.resume();
  await rig.close(boot3);
});

test('sync DTL: a write acknowledged while degraded (not in the DTL) is not undone by an older DTL entry at the next local restart', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = () => dtlProvider({ servers: [server.address], defaultMode: 'sync', router: 'r', retryMs: 600_000, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl() });
  boot.backend.pause();
  await boot.pool.createFile('/d', 0o644, 0, 0, 32 * CS);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  const first = pattern(1, 2 * CS);
  await v.write(0, first); // in the DTL (tag: the open SCO, entries 0 and 1)
  await server.kill9();
  const second = pattern(2, CS);
  await v.write(0, second); // acknowledged degraded: only in the write cache (same SCO, slot 2)
  await until('degraded', () => v.info().dtl.state === 'degraded');
  await v.sync();
  rig.kill(boot); // nothing lost locally
  v.dtl.close(false);
  await server.start(); // back, with its copy from before (no catch-up happened)

  const boot2 = await rig.open({ dtl: dtl() });
  boot2.backend.pause();
  const want = Buffer.concat([second, first.subarray(CS)]);
  t.deepEqual(await boot2.pool.vdisk('/d').read(0, 2 * CS), want, 'the write acknowledged while degraded is there');
  boot2.backend.resume();
  await rig.close(boot2);
});
