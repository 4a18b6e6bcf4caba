/**
 * The client bridges against a real DTL server process, at the volume layer:
 * - a stalled server (SIGSTOP: connected, silent): async writes fill the queue up to its bound, then wait,
 *   never fail; when the requests time out the vDisk is `degraded` and writes go on at once; SIGCONT: it
 *   catches up and is `ok_sync` again, and the server holds the whole history again;
 * - unlinking a vDisk drops its entries on the server; mode none drops them too.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ASYNC_MAX_BYTES, type DtlBridge } from '../dtl-client/bridge.js';
import { DtlClient } from '../dtl-client/client.js';
import { dtlProvider } from '../dtl-client/provider.js';
import type { DtlMode, VPool } from '../volume/types.js';
import { openVPool } from '../volume/vpool.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { until } from './helpers/until.js';


async function pool(t: import('ava').ExecutionContext, server: string, mode: DtlMode, timeoutMs = 2000): Promise<{ pool: VPool; root: string }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bridge-'));
  const p = await openVPool({ name: 'b', stateDir: path.join(root, 'state'), routerId: 'r', writeCacheBytes: 256 * 2 ** 20,
    dtl: dtlProvider({ servers: [server], defaultMode: mode, router: 'r', retryMs: 200, timeoutMs }) });
  t.teardown(async () => {
    await p.close().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { pool: p, root };
}

test('async, a stalled server: the queue stays bounded, writes wait then go on degraded, never fail; back: ok_sync with the whole history', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bridge-srv-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const srv = await startDtlServer(t, root);
  const { pool: p } = await pool(t, srv.address, 'async', 15_000);
  await p.createFile('/d', 0o644, 0, 0, 64 * 2 ** 20);
  const v = p.vdisk('/d');
  await until('attached', () => v.info().dtl.state === 'ok_sync');
  const bridge = (v as unknown as { dtl: DtlBridge }).dtl;
  srv.pause();
  const block = Buffer.alloc(64 * 1024, 7);
  // fill the queue past its bound while the server is silent (it drains nothing)
  let off = 0;
  const perWrite = 16 * (4096 + 21); // 16 cluster entries
  while (bridge.queuedBytes + perWrite <= ASYNC_MAX_BYTES && v.info().dtl.state === 'ok_sync') {
    await v.write(off, block);
    off += block.length;
  }
  t.is(v.info().dtl.state, 'ok_sync', 'the queue filled before the requests timed out (15 s)');
  t.true(bridge.queuedBytes <= ASYNC_MAX_BYTES, `queued ${bridge.queuedBytes} bytes, bound ${ASYNC_MAX_BYTES}`);
  // the next write crosses the bound and waits: nothing can drain the queue, so it resolves only once the bridge gives up (degraded)
  await v.write(off, block);
  t.is(v.info().dtl.state, 'degraded', 'the throttled write was released by the degradation, not before');
  t.log(`${off / 2 ** 20} MiB queued, then the next write waited until the requests timed out`);
  for (let i = 0; i < 64; i++) await v.write(off + i * block.length, block); // degraded: at once, no error
  t.like(v.info().dtl, { mode: 'async', state: 'degraded', server: null });
  await v.write(0, block); // at once, degraded
  await v.sync();
  srv.resume();
  await until('ok_sync again', () => v.info().dtl.state === 'ok_sync');
  await v.sync();
  // everything not in the backend is on the server again (the backend may have taken some meanwhile)
  const c = new DtlClient({ servers: [srv.address] });
  t.teardown(() => c.close());
  const range = await c.getScoRange(v.id);
  t.true(range.registered);
  const info = v.info();
  t.true(range.entries > 0 || info.dirtyBytes === 0, `the server holds ${range.entries} entries, ${info.dirtyBytes} bytes are not in the backend`);
});

test('unlinking a vDisk, or mode none, drops its entries on the server', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bridge-srv-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const srv = await startDtlServer(t, root);
  const { pool: p } = await pool(t, srv.address, 'sync');
  await p.createFile('/a', 0o644, 0, 0, 2 ** 20);
  await p.createFile('/b', 0o644, 0, 0, 2 ** 20);
  const a = p.vdisk('/a');
  const b = p.vdisk('/b');
  await until('attached', () => a.info().dtl.state === 'ok_sync' && b.info().dtl.state === 'ok_sync');
  await a.write(0, Buffer.alloc(8192, 1));
  await b.write(0, Buffer.alloc(8192, 2));
  const ids = [a.id, b.id];
  const dirs = () => fs.readdirSync(path.join(root, 'vd')).sort();
  t.deepEqual(dirs(), [...ids].sort());
  await p.unlink('/a');
  await until('a unregistered', () => !dirs().includes(ids[0]));
  await p.setDtlMode('/b', 'none');
  await until('b unregistered', () => dirs().length === 0);
  t.deepEqual(b.info().dtl, { mode: 'none', state: 'ok_standalone', server: null });
  await t.throwsAsync(p.setDtlMode('/b', 'bogus' as DtlMode), { code: 'INVALID' });
});

test('host loss with a stale DTL: a resize the backend has (and undid) is not replayed over it', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bridge-stale-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const srv = await startDtlServer(t, path.join(root, 'dtl'));
  const backendUrl = `file://${path.join(root, 'backend')}`;
  // no retries during the test (it stays degraded), no age-based shipping (nothing moves unless asked)
  const dtlA = dtlProvider({ servers: [srv.address], defaultMode: 'sync', router: 'a', retryMs: 600_000 });
  const a = await openVPool({ name: 's', stateDir: path.join(root, 'a'), backendUrl, routerId: 'a', scoMaxAgeMs: 600_000, dtl: dtlA });
  await a.createFile('/d', 0o644, 0, 0, 0);
  const v = a.vdisk('/d');
  await until('attached', () => v.info().dtl.state === 'ok_sync');
  await v.write(0, Buffer.alloc(4096, 9));
  await v.syncToBackend();
  await v.resize(8 * 2 ** 20); // r1: in the DTL (sync), tagged with the next SCO, no SCO after it
  await srv.kill9();
  await v.resize(4 * 2 ** 20); // r2: the DTL is gone, acknowledged degraded
  t.is(v.info().dtl.state, 'degraded');
  await v.syncToBackend(); // r1 and r2 in the backend; the DTL still holds r1
  await a.close();
  await srv.start();
  // the host is lost; router C rebuilds from the backend and asks the DTL
  const dtlC = dtlProvider({ servers: [srv.address], defaultMode: 'sync', router: 'c', retryMs: 200 });
  const c = await openVPool({ name: 's', stateDir: path.join(root, 'c'), backendUrl, routerId: 'c', dtl: dtlC });
  t.teardown(() => c.close());
  const vc = c.vdisk('/d');
  t.is(vc.size, 4 * 2 ** 20, 'the size the backend has, not the older one the stale DTL holds');
  t.true((await vc.read(0, 4096)).equals(Buffer.alloc(4096, 9)));
});

test('host loss after a rollback made while degraded: the rolled-back writes the stale DTL holds do not come back', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bridge-rollback-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const srv = await startDtlServer(t, path.join(root, 'dtl'));
  const backendUrl = `file://${path.join(root, 'backend')}`;
  const dtlA = dtlProvider({ servers: [srv.address], defaultMode: 'sync', router: 'a', retryMs: 600_000 });
  const a = await openVPool({ name: 'r', stateDir: path.join(root, 'a'), backendUrl, routerId: 'a', scoMaxAgeMs: 600_000, dtl: dtlA });
  await a.createFile('/d', 0o644, 0, 0, 2 ** 20);
  const v = a.vdisk('/d');
  await until('attached', () => v.info().dtl.state === 'ok_sync');
  await v.write(0, Buffer.alloc(4096, 1));
  await a.snapshots.create('/d', 'one');
  await v.syncToBackend();
  await v.write(0, Buffer.alloc(4096, 2)); // in the DTL (sync)
  await srv.kill9();
  await v.write(8192, Buffer.alloc(4096, 3)); // degraded from here on
  t.is(v.info().dtl.state, 'degraded');
  await a.snapshots.rollback('/d', 'one'); // the DTL cannot hear of it
  t.true((await v.read(0, 4096)).equals(Buffer.alloc(4096, 1)));
  await a.close(); // nothing after the rollback: the backend names no SCO past the one of snapshot `one`
  await srv.start();
  const probe = new DtlClient({ servers: [srv.address] });
  const held = await probe.getScoRange(v.id);
  probe.close();
  t.true(held.entries > 0, `the stale DTL holds the write from before the rollback: ${JSON.stringify(held)}`);
  const dtlC = dtlProvider({ servers: [srv.address], defaultMode: 'sync', router: 'c', retryMs: 200 });
  const c = await openVPool({ name: 'r', stateDir: path.join(root, 'c'), backendUrl, routerId: 'c', dtl: dtlC });
  t.teardown(() => c.close());
  const vc = c.vdisk('/d');
  t.true((await vc.read(0, 4096)).equals(Buffer.alloc(4096, 1)), 'the rolled-back write stays rolled back');
  t.true((await vc.read(8192, 4096)).equals(Buffer.alloc(4096)), 'the write before the rollback is gone');
});
