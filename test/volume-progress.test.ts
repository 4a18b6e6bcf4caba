/**
 * A long ship to the backend (a clean stop with a full write cache and a slow backend) says how far it is:
 * syncToBackend() logs what is left every few seconds, then how much it shipped.
 */
import test from 'ava';
import { Writable } from 'node:stream';
import winston from 'winston';
import { openBlobStore } from '../volume/backend/index.js';
import { rootLogger, setLogLevel } from '../util/log.js';
import { gatedStore } from './helpers/gated-store.js';
import { pattern, poolEnv } from './helpers/vpool.js';

const MiB = 2 ** 20;

test('syncToBackend logs its progress while the backend holds it up, then what it shipped', async (t) => {
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
  t.true((p.dirtyBytes as number) > 0 && (p.startDirtyBytes as number) >= 4 * MiB, JSON.stringify(p));
  t.true((p.scos as number) > 0, 'SCOs waiting for the backend');
  gated.resume();
  await shipping;
  const done = entries.find((e) => e.message === 'shipped to the backend');
  t.truthy(done);
  t.is(done!.bytes, p.startDirtyBytes);
  t.is(pool.vdisk('/p').info().dirtyBytes, 0);
  t.true((await pool.vdisk('/p').read(0, data.length)).equals(data));
});
