/**
 * Discards and the DTL (dtl-client/messages.ts kind 2), deterministic, in-process over a real DTL server
 * process (helpers/dtl-server.ts) and the power-cut rig (helpers/faulty-pool.ts):
 * - host loss: writes, a discard and a write inside the discarded range reach only the write cache and the
 *   DTL; the router is lost (its state dropped), another opens the vDisk from the backend and replays the
 *   DTL: the discarded range reads zeros, nothing older comes back, the later write is there;
 * - power cut and local restart (sync DTL): the write cache lost the discard's record; the replay over
 *   the local state clears what was written before it;
 * - a write made after the discard while the DTL was down (only local) is not cleared by the discard when
 *   the DTL replays it at the next local restart;
 * - a local restart's catch-up ships the history with its discards (history.ts): a host loss after it.
 * The seeded host-loss rounds with discards are in dtl-hostloss-volume.test.ts (crash-ops.ts).
 */
import test from 'ava';
import path from 'node:path';
import { dtlProvider } from '../dtl-client/provider.js';
import { MemoryMetadataStore } from '../mds/memory-store.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { until } from './helpers/until.js';
import { powerCutRig } from './helpers/faulty-pool.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { RefDisk } from './helpers/ref-disk.js';
import { pattern } from './helpers/vpool.js';

const CS = 4096;

test('host loss after a discard: the vDisk rebuilt from the backend and the DTL reads zeros there, the later write is kept', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = (router: string) => dtlProvider({ servers: [server.address], defaultMode: 'sync', router, retryMs: 100, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl('a'), routerId: 'a' });
  await boot.pool.createFile('/d', 0o644, 0, 0, 0);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  const ref = new RefDisk();
  const op = async (kind: 'write' | 'discard', off: number, len: number, seed = 0) => {
    if (kind === 'write') {
      const data = pattern(seed, len);
      await v.write(off, data);
      ref.write(off, data);
    } else {
      await v.discard(off, len);
      ref.discard(off, len);
    }
  };
  await op('write', 0, 40 * CS, 1);
  await boot.pool.syncToBackend(); // the data and the tree (the file) in the backend: the discard below must hide it
  boot.backend.pause(); // from here on only the write cache and the DTL hold anything
  await op('write', 20 * CS, 8 * CS, 2);
  await op('discard', 2 * CS + 100, 30 * CS); // unaligned: the edge clusters are zeroed in part
  await op('write', 10 * CS, CS, 3); // inside the discarded range, after the discard
  t.true(v.allocatedBytes < 40 * CS, 'the discard freed clusters');
  t.deepEqual(await v.read(0, 40 * CS), ref.read(0, 40 * CS), 'before the host loss');
  rig.kill(boot);
  v.dtl.close(false); // the lost router's connection goes with it

  // another router: a state directory and a metadata store of its own, the same backend and DTL server
  const other = await rig.open({ dtl: dtl('c'), routerId: 'c', stateDir: path.join(rig.root, 'state-c'), metadataStore: new MemoryMetadataStore(), force: true }); // a's claim is still live: taken as an operator would (docs/cluster.md)
  const v2 = other.pool.vdisk('/d');
  t.is(v2.size, ref.size);
  t.deepEqual(await v2.read(0, 40 * CS), ref.read(0, 40 * CS), 'after the host loss: zeros where discarded, the later write there');
  t.is(v2.allocatedBytes, ref.allocatedBytes, 'the discarded clusters are not allocated');
  t.is(v2.seek(3 * CS, 'hole'), 3 * CS, 'SEEK_HOLE sees the discarded range');
  await rig.close(other);
});

test('sync DTL, power cut, local restart: the replay clears what was written before a discard the write cache lost', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = () => dtlProvider({ servers: [server.address], defaultMode: 'sync', router: 'r', retryMs: 100, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl() });
  boot.backend.pause();
  await boot.pool.createFile('/d', 0o644, 0, 0, 0);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  const ref = new RefDisk();
  const a = pattern(1, 16 * CS);
  await v.write(0, a);
  ref.write(0, a);
  await v.sync(); // durable locally: the discard must clear it again after the cut
  const b = pattern(2, 12 * CS); // never fdatasynced locally: only the DTL keeps it
  await v.write(12 * CS, b);
  ref.write(12 * CS, b);
  await v.discard(4 * CS + 7, 16 * CS);
  ref.discard(4 * CS + 7, 16 * CS);
  const c = pattern(3, CS + 5);
  await v.write(8 * CS, c);
  ref.write(8 * CS, c);
  rig.cut(boot);
  v.dtl.close(false);

  const boot2 = await rig.open({ dtl: dtl() });
  boot2.backend.pause();
  const v2 = boot2.pool.vdisk('/d');
  t.is(v2.size, ref.size);
  t.deepEqual(await v2.read(0, ref.size), ref.read(0, ref.size), 'the discard and the writes around it, in order');
  t.is(v2.allocatedBytes, ref.allocatedBytes);
  // the replay was made durable locally: another cut, without the DTL, changes nothing
  rig.cut(boot2);
  (v2 as VDiskImpl).dtl.close(false);
  await server.kill9();
  const boot3 = await rig.open();
  t.deepEqual(await boot3.pool.vdisk('/d').read(0, ref.size), ref.read(0, ref.size), 'after the next power cut');
  boot3.backend.resume();
  await rig.close(boot3);
});

test('sync DTL: a write after a discard, acknowledged while degraded, is not cleared when the DTL replays the discard', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = () => dtlProvider({ servers: [server.address], defaultMode: 'sync', router: 'r', retryMs: 600_000, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl() });
  boot.backend.pause();
  await boot.pool.createFile('/d', 0o644, 0, 0, 8 * CS);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  const first = pattern(1, 4 * CS);
  await v.write(0, first); // in the DTL
  await v.discard(0, 4 * CS); // in the DTL
  await server.kill9();
  const second = pattern(2, 2 * CS);
  await v.write(CS, second); // acknowledged degraded: only in the write cache
  await until('degraded', () => v.info().dtl.state === 'degraded');
  await v.sync();
  rig.kill(boot); // nothing lost locally
  v.dtl.close(false);
  await server.start(); // back, with its copy from before the write (no catch-up happened)

  const boot2 = await rig.open({ dtl: dtl() });
  boot2.backend.pause();
  const want = Buffer.alloc(8 * CS);
  second.copy(want, CS);
  t.deepEqual(await boot2.pool.vdisk('/d').read(0, 8 * CS), want, 'zeros, and the write made after the discard');
  boot2.backend.resume();
  await rig.close(boot2);
});

test('a local restart ships the history with its discards to the DTL: a host loss after it still reads zeros there', async (t) => {
  const rig = powerCutRig(t);
  const server = await startDtlServer(t, path.join(rig.root, 'dtl'));
  const dtl = (router: string) => dtlProvider({ servers: [server.address], defaultMode: 'sync', router, retryMs: 100, timeoutMs: 2000 });
  const boot = await rig.open({ dtl: dtl('a'), routerId: 'a' });
  await boot.pool.createFile('/d', 0o644, 0, 0, 0);
  const v = boot.pool.vdisk('/d') as VDiskImpl;
  await until('the DTL attached', () => v.info().dtl.state === 'ok_sync');
  await boot.pool.syncToBackend(); // the tree (the file) is in the backend
  boot.backend.pause(); // from here on nothing reaches the backend: the DTL's copy is all a new router gets
  const ref = new RefDisk();
  const x = pattern(1, 24 * CS);
  await v.write(0, x);
  ref.write(0, x);
  await v.discard(3 * CS, 9 * CS + 1);
  ref.discard(3 * CS, 9 * CS + 1);
  const y = pattern(2, CS);
  await v.write(5 * CS, y);
  ref.write(5 * CS, y);
  rig.kill(boot);
  v.dtl.close(false);

  // local restart: the bridge clears the server's copy and ships the local history (history.ts) instead
  const boot2 = await rig.open({ dtl: dtl('a'), routerId: 'a' });
  boot2.backend.pause();
  const v2 = boot2.pool.vdisk('/d') as VDiskImpl;
  await until('caught up after the local restart', () => v2.info().dtl.state === 'ok_sync');
  t.deepEqual(await v2.read(0, ref.size), ref.read(0, ref.size), 'after the local restart');
  rig.kill(boot2);
  v2.dtl.close(false);

  const other = await rig.open({ dtl: dtl('c'), routerId: 'c', stateDir: path.join(rig.root, 'state-c'), metadataStore: new MemoryMetadataStore(), force: true }); // a's claim is still live: taken as an operator would (docs/cluster.md)
  const v3 = other.pool.vdisk('/d');
  t.is(v3.size, ref.size);
  t.deepEqual(await v3.read(0, ref.size), ref.read(0, ref.size), 'after the host loss: the discard came with the history');
  t.is(v3.allocatedBytes, ref.allocatedBytes);
  await rig.close(other);
});
