/**
 * The DTL server over real TCP on loopback: the commands round-trip, vDisks are isolated, a restart and
 * a kill -9 of the server process lose no entry, a wrong secret is refused and logged, a server without
 * a secret refuses a routable address, the client fails over to the next server, and a bounded fuzz of
 * malformed frames leaves a real client unaffected.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DtlClient } from '../dtl-client/client.js';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, MAX_PAYLOAD, Msg } from '../dtl-client/frame.js';
import { encodeEntry, Writer, type DtlEntry } from '../dtl-client/messages.js';
import { DtlServer } from '../dtl-client/server.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { sh } from './helpers/mount.js';

async function tmp(t: ExecutionContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'vpoolfs-dtl-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function inProcess(t: ExecutionContext, dir: string, secret?: Buffer, port = 0): Promise<DtlServer> {
  const s = await DtlServer.start({ host: '127.0.0.1', port, dir, secret });
  t.teardown(() => s.close());
  return s;
}

function client(t: ExecutionContext, servers: string[], secret?: Buffer): DtlClient {
  const c = new DtlClient({ servers, secret, timeoutMs: 5000 });
  t.teardown(() => c.close());
  return c;
}

/** Cluster entry n of vDisk `seed`: tag = 1 + n/10, address n, data derived from both. */
function cluster(seed: number, n: number): Buffer {
  const data = Buffer.alloc(4096, (seed * 31 + n) & 0xff);
  data.writeUInt32LE(n, 0);
  return encodeEntry(0, 1 + Math.floor(n / 10), n, data);
}

async function all(c: DtlClient, vdisk: string, from = 0): Promise<DtlEntry[]> {
  const out: DtlEntry[] = [];
  await c.getEntries(vdisk, from, (e) => out.push(e.kind === 'cluster' ? { ...e, data: Buffer.from(e.data) } : e));
  return out;
}

function checkClusters(t: ExecutionContext, got: DtlEntry[], seed: number, ns: number[]): void {
  t.is(got.length, ns.length);
  const bad = ns.filter((n, i) => {
    const e = got[i];
    return e === undefined || e.kind !== 'cluster' || e.address !== n || !e.data.equals(cluster(seed, n).subarray(21));
  });
  t.deepEqual(bad, [], 'entries missing or wrong');
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

test('commands round-trip: register, add, flush, get, range, remove-up-to, clear, unregister', async (t) => {
  const s = await inProcess(t, await tmp(t));
  const c = client(t, [s.address]);
  await t.throwsAsync(c.addEntries('vd1', [cluster(1, 0)]), { instanceOf: DtlError, code: 'NOT_REGISTERED' });
  await c.register('vd1', 'router-a', 1000);
  for (let b = 0; b < 10; b++) await c.addEntries('vd1', range(b * 10, b * 10 + 10).map((n) => cluster(1, n)));
  await c.addEntries('vd1', [encodeEntry(1, 10, 5 * 2 ** 20)]);
  await c.flush('vd1');
  t.like(await c.getScoRange('vd1'), { registered: true, epoch: 1000, router: 'router-a', first: 1, last: 10, entries: 101 });
  const got = await all(c, 'vd1');
  checkClusters(t, got.slice(0, 100), 1, range(0, 100));
  t.deepEqual(got[100], { kind: 'resize', tag: 10, size: 5 * 2 ** 20, tlog: 0 });
  const from8 = await all(c, 'vd1', 8);
  checkClusters(t, from8.slice(0, 30), 1, range(70, 100));
  t.deepEqual(from8.slice(30), [{ kind: 'resize', tag: 10, size: 5 * 2 ** 20, tlog: 0 }]);
  await c.removeUpTo('vd1', 5);
  const after = await all(c, 'vd1');
  t.is(after.length, 51);
  t.like(await c.getScoRange('vd1'), { first: 6, last: 10 });
  await c.clear('vd1');
  t.is((await all(c, 'vd1')).length, 51, 'a Clear takes effect at the next Flush');
  await c.flush('vd1');
  t.is((await all(c, 'vd1')).length, 0);
  await c.unregister('vd1');
  t.like(await c.getScoRange('vd1'), { registered: false });
  await t.throwsAsync(c.register('../etc', 'r', 1), { instanceOf: DtlError, code: 'INVALID' });
});

test('a Clear takes effect at the next Flush: until then readers see the entries before it, also across a restart', async (t) => {
  const dir = await tmp(t);
  const s1 = await DtlServer.start({ host: '127.0.0.1', port: 0, dir });
  const c = client(t, [s1.address]);
  await c.register('vd', 'r', 1);
  await c.addEntries('vd', range(0, 50).map((n) => cluster(7, n)));
  await c.flush('vd');
  await c.clear('vd'); // a router re-ships its history: Clear, entries, Flush; it dies half way
  await c.addEntries('vd', range(100, 110).map((n) => cluster(7, n)));
  checkClusters(t, await all(c, 'vd'), 7, range(0, 50));
  await c.removeUpTo('vd', 2);
  checkClusters(t, await all(c, 'vd'), 7, range(20, 50));
  const port = s1.port;
  await s1.close();
  const s2 = await inProcess(t, dir, undefined, port);
  const c2 = client(t, [s2.address]);
  checkClusters(t, await all(c2, 'vd'), 7, range(20, 50));
  await c2.clear('vd'); // a second Clear drops the uncommitted generation only
  await c2.addEntries('vd', range(200, 205).map((n) => cluster(7, n)));
  checkClusters(t, await all(c2, 'vd'), 7, range(20, 50));
  await c2.flush('vd');
  checkClusters(t, await all(c2, 'vd'), 7, range(200, 205));
  t.like(await c2.getScoRange('vd'), { first: 21, last: 21, entries: 5 });
});

test('vDisks are isolated from each other, across clients', async (t) => {
  const s = await inProcess(t, await tmp(t));
  const a = client(t, [s.address]);
  const b = client(t, [s.address]);
  await a.register('vd-a', 'r1', 1);
  await b.register('vd-b', 'r2', 1);
  await Promise.all([
    (async () => { for (let i = 0; i < 20; i++) await a.addEntries('vd-a', range(i * 10, i * 10 + 10).map((n) => cluster(1, n))); })(),
    (async () => { for (let i = 0; i < 20; i++) await b.addEntries('vd-b', range(i * 10, i * 10 + 10).map((n) => cluster(2, n))); })(),
  ]);
  await a.removeUpTo('vd-a', 10);
  await b.clear('vd-b');
  await b.addEntries('vd-b', [cluster(2, 7)]);
  await b.flush('vd-b');
  checkClusters(t, await all(b, 'vd-a'), 1, range(100, 200));
  checkClusters(t, await all(a, 'vd-b'), 2, [7]);
});

test('a restart of the server loses nothing, and the client reconnects', async (t) => {
  const dir = await tmp(t);
  const s1 = await DtlServer.start({ host: '127.0.0.1', port: 0, dir });
  const port = s1.port;
  const c = client(t, [s1.address]);
  await c.register('vd', 'r', 5);
  for (let i = 0; i < 30; i++) await c.addEntries('vd', range(i * 10, i * 10 + 10).map((n) => cluster(3, n)));
  await c.removeUpTo('vd', 3);
  await s1.close();
  await t.throwsAsync(c.flush('vd'), { instanceOf: DtlError });
  await inProcess(t, dir, undefined, port);
  t.like(await c.getScoRange('vd'), { registered: true, epoch: 5, first: 4, last: 30 });
  checkClusters(t, await all(c, 'vd'), 3, range(30, 300));
});

test('kill -9 of the server process loses no acknowledged entry; a torn tail is cut', async (t) => {
  const dir = await tmp(t);
  const srv = await startDtlServer(t, dir);
  const c = client(t, [srv.address]);
  await c.register('vd', 'r', 1);
  let acked = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await c.addEntries('vd', range(i * 10, i * 10 + 10).map((n) => cluster(4, n)));
        if (i % 5 === 4) await c.flush('vd');
        acked = i * 10 + 10;
      } catch {
        return;
      }
    }
  })();
  while (acked < 2000) await new Promise((r) => setTimeout(r, 5));
  await srv.kill9();
  stop = true;
  await writer;
  const have = acked;
  await srv.start();
  const got = await all(c, 'vd');
  t.true(got.length >= have, `${got.length} entries back, ${have} acknowledged`);
  checkClusters(t, got.slice(0, have), 4, range(0, have));
  t.log(`${have} acknowledged entries, ${got.length} back after kill -9`);
});

test('a wrong secret is refused and logged; the right one works; no secret, no routable address', async (t) => {
  const dir = await tmp(t);
  const secretFile = path.join(dir, 'secret');
  const secret = Buffer.from('correct horse battery staple');
  await writeFile(secretFile, `${secret.toString()}\n`);
  const srv = await startDtlServer(t, path.join(dir, 'data'), ['--secret-file', secretFile]);
  await t.throwsAsync(client(t, [srv.address], Buffer.from('wrong horse battery staple!')).register('vd', 'r', 1), { instanceOf: DtlError, code: 'AUTH' });
  await t.throwsAsync(client(t, [srv.address]).register('vd', 'r', 1), { instanceOf: DtlError, code: 'AUTH', message: /requires a shared secret/ });
  const good = client(t, [srv.address], secret);
  await good.register('vd', 'r', 1);
  await good.addEntries('vd', [cluster(5, 1)]);
  checkClusters(t, await all(good, 'vd'), 5, [1]);
  t.regex(srv.output, /DTL client refused: wrong secret/);
  // a server with a secret: a client that has one refuses a server that does not authenticate
  const open = await inProcess(t, path.join(dir, 'open'));
  await t.throwsAsync(client(t, [open.address], secret).register('vd', 'r', 1), { instanceOf: DtlError, code: 'AUTH', message: /does not authenticate/ });
  const r = await sh(`node ${JSON.stringify(path.resolve('dist/tools/cli.js'))} dtl-server --listen 0.0.0.0:0 --dir ${JSON.stringify(dir)}/x`, { timeoutMs: 20_000 });
  t.not(r.code, 0);
  t.regex(r.stderr, /without --secret-file/);
});

test('two servers configured, the first one dies: the client moves to the second', async (t) => {
  const dir = await tmp(t);
  const first = await startDtlServer(t, path.join(dir, 'a'));
  const second = await inProcess(t, path.join(dir, 'b'));
  const c = client(t, [first.address, second.address]);
  t.is(await c.connect(), first.address);
  await first.kill9();
  // a call racing the death may fail (UNREACHABLE, the connection is dropped); the next one reconnects
  await c.register('vd', 'r', 1).catch((err: DtlError) => {
    t.is(err.code, 'UNREACHABLE');
    return c.register('vd', 'r', 1);
  });
  t.is(c.server, second.address);
  await c.addEntries('vd', [cluster(6, 2)]);
  checkClusters(t, await all(c, 'vd'), 6, [2]);
});

test('fuzz: random and malformed frames close only their own connection while a real client keeps working', async (t) => {
  const s = await inProcess(t, await tmp(t));
  const [host, port] = [s.address.split(':')[0], Number(s.address.split(':')[1])];
  const c = client(t, [s.address]);
  await c.register('vd', 'r', 1);
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const valid = () => encodeFrame(Msg.AddEntries, 1, new Writer().str('vd').u32(1).raw(cluster(9, 99999)).done());
  const evil: Array<() => Buffer> = [
    () => randomBytes(1 + Math.floor(rnd() * 3000)),
    () => { const f = valid(); f[Math.floor(rnd() * f.length)] ^= 1 << Math.floor(rnd() * 8); return f; },
    () => valid().subarray(0, Math.floor(rnd() * 200)),
    () => { const f = encodeFrame(Msg.Flush, 1, Buffer.alloc(0)); f.writeUInt32LE(MAX_PAYLOAD + 1 + Math.floor(rnd() * 1e9), 8); return f.subarray(0, 12); },
    () => encodeFrame(Math.floor(rnd() * 256), Math.floor(rnd() * 1e6), randomBytes(Math.floor(rnd() * 200))),
    () => encodeFrame(Msg.AddEntries, 1, new Writer().str('vd').u32(3).raw(cluster(9, 5)).done()),
    () => encodeFrame(Msg.Register, 1, new Writer().str('../../x').str('r').f64(1).done()),
  ];
  let done = false;
  let sent = 0;
  const fuzzer = async () => {
    while (!done) {
      const sock = net.connect({ host, port });
      sock.on('error', () => undefined);
      await new Promise((r) => sock.once('connect', r));
      sock.write(evil[Math.floor(rnd() * evil.length)]());
      sent++;
      await new Promise((r) => { sock.once('close', r); setTimeout(r, 50); });
      sock.destroy();
    }
  };
  const fuzzers = [fuzzer(), fuzzer(), fuzzer()];
  for (let i = 0; i < 300; i++) await c.addEntries('vd', range(i * 10, i * 10 + 10).map((n) => cluster(9, n)));
  await c.flush('vd');
  done = true;
  await Promise.all(fuzzers);
  const got = (await all(c, 'vd')).filter((e) => e.kind === 'cluster' && e.address !== 99999);
  checkClusters(t, got, 9, range(0, 3000));
  t.true(sent > 10, `${sent} malformed frames sent`);
  t.log(`${sent} malformed frames sent while the client wrote 3000 entries`);
});
