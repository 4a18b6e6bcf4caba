/**
 * A long ship to the backend (a clean stop with a full write cache and a slow backend) says how far it is:
 * syncToBackend() logs every few seconds the bytes and objects shipped out of how many and the rate, and
 * while the backend refuses, its cause each time (not only the first); then how much it shipped. Serial:
 * both tests watch the same log.
 */
import test from 'ava';
import { Writable } from 'node:stream';
import winston from 'winston';
import { openBlobStore } from '../volume/backend/index.js';
import { rootLogger, setLogLevel } from '../util/log.js';
import { gatedStore } from './helpers/gated-store.js';
import { pattern, poolEnv } from './helpers/vpool.js';
import { captureLog } from './helpers/slot-probe.js';
import { until } from './helpers/until.js';

const MiB = 2 ** 20;

test.serial('syncToBackend logs its progress while the backend holds it up, then what it shipped', async (t) => {
  const entries: Array<Record<string, unknown>> = [];
  const sink = new winston.transports.Stream({
    stream: new Writable({ write(chunk, _enc, cb) { entries.push(JSON.parse(String(chunk)) as Record<string, unknown>); cb(); } }),
  });
  rootLogger.add(sink);
  setLogLevel('info');
  t.teardown(() => { rootLogger.remove(sink); setLogLevel('warn'); });

  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated, scoMaxAgeMs: 3_600_000 });
  await pool.createFile('/p', 0o644, 0, 0, 0);
  const data = pattern(31, 4 * MiB);
  await pool.vdisk('/p').write(0, data);
  gated.pause();
  const shipping = pool.syncToBackend();
  const progress = () => entries.filter((e) => e.message === 'shipping to the backend');
  while (progress().length === 0) await new Promise((r) => setTimeout(r, 50));
  const p = progress()[0];
  t.is(p.vpool, pool.name);
  t.true((p.totalBytes as number) >= 4 * MiB && p.doneBytes === 0, JSON.stringify(p));
  t.true((p.totalObjects as number) > 0 && p.doneObjects === 0, 'SCOs and TLogs waiting for the backend');
  t.is(p.what, 'every vDisk and the tree to the backend');
  t.is(typeof p.bytesPerSecond, 'number');
  gated.resume();
  await shipping;
  const done = entries.find((e) => e.message === 'shipped to the backend');
  t.truthy(done);
  t.is(done!.bytes, p.totalBytes);
  t.is(done!.objects, p.totalObjects);
  t.is(pool.vdisk('/p').info().dirtyBytes, 0);
  t.true((await pool.vdisk('/p').read(0, data.length)).equals(data));
});

test.serial('a ship the backend refuses logs its progress and the cause each time, then what it shipped', async (t) => {
  setLogLevel('info');
  const logs = captureLog(t);
  const env = poolEnv(t);
  const gated = gatedStore(t, await openBlobStore(env.backendUrl));
  const pool = await env.open({ backend: gated });
  await pool.createFile('/p', 0o644, 0, 0, 0);
  const v = pool.vdisk('/p');
  gated.setFailing(true);
  await v.write(0, Buffer.alloc(256 * 1024, 3));
  const ship = pool.syncToBackend();
  const refusals = () => logs.filter((l) => l.message === 'shipping to the backend: the backend refuses, retrying');
  await until('two refusals logged', () => refusals().length >= 2);
  for (const r of refusals().slice(0, 2)) {
    t.regex(String(r.cause), /BACKEND|fail/i, `the cause is in every progress line: ${JSON.stringify(r)}`);
    t.true((r.totalBytes as number) >= 256 * 1024, `the total waiting: ${r.totalBytes} (slots with their headers)`);
    t.is(r.doneBytes, 0, 'nothing shipped while refused');
    t.true(typeof r.bytesPerSecond === 'number' && typeof r.totalObjects === 'number' && (r.totalObjects as number) > 0);
  }
  gated.setFailing(false);
  await ship;
  const shipped = logs.filter((l) => l.message === 'shipped to the backend');
  t.is(shipped.length, 1);
  t.like(shipped[0], { what: 'every vDisk and the tree to the backend' });
  t.true((shipped[0].bytes as number) >= 256 * 1024);
});

