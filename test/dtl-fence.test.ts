/**
 * Fencing at the DTL server (dtl-client/fence.ts), against a real server process over TCP: once a newer owner
 * has recovered (Fence) or registered a vDisk, the older owner's changes (AddEntries, Flush, Clear, RemoveUpTo,
 * Unregister) and its Register are refused with FENCED, naming the new owner; reads stay open; the fence
 * survives a kill -9 and restart of the server; a restart of the same router (same owner tag, next claim epoch)
 * is not fenced by itself; a takeback after a delegation and the holder's later restart are admitted while the
 * delegate is refused. Bad input: malformed owner fields get INVALID (the connection stays usable), truncated
 * ones PROTOCOL (that connection only is dropped), a client from before fencing (no owner fields) is refused with
 * a FENCED reply whose status byte (6) and message it can read.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DtlClient } from '../dtl-client/client.js';
import type { DtlError } from '../dtl-client/errors.js';
import type { Owner } from '../dtl-client/fence.js';
import { encodeFrame, FrameDecoder, MAGIC, Msg, type Frame } from '../dtl-client/frame.js';
import { encodeEntry, Reader, Writer } from '../dtl-client/messages.js';
import { startDtlServer } from './helpers/dtl-server.js';

async function tmp(t: ExecutionContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'vpoolfs-dtlfence-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Pinned to its connection, as a bridge (a lost one is not quietly replaced: the registration is per connection). */
function client(t: ExecutionContext, server: string): DtlClient {
  const c = new DtlClient({ servers: [server], timeoutMs: 5000, reconnect: false });
  t.teardown(() => c.close());
  return c;
}

/** Reconnecting, as a recovery's. */
function recovery(t: ExecutionContext, server: string): DtlClient {
  const c = new DtlClient({ servers: [server], timeoutMs: 5000 });
  t.teardown(() => c.close());
  return c;
}

const entry = (n: number): Buffer => encodeEntry(0, 1 + n, n, Buffer.alloc(4096, n & 0xff));

/** A client attached as `o`: connected and registered. */
async function attach(t: ExecutionContext, server: string, o: Owner, vdisk = 'vd'): Promise<DtlClient> {
  const c = client(t, server);
  await c.connect();
  await c.register(vdisk, o.router, Date.now(), o);
  return c;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as DtlError).code;
  }
}

/** A raw connection (no secret): sends frames, returns the frames the server sends back. */
async function raw(server: string): Promise<{ send(f: Buffer): Promise<Frame | 'closed'>; close(): void }> {
  const [host, port] = server.split(':');
  const sock = net.connect({ host, port: Number(port) });
  sock.on('error', () => undefined);
  const dec = new FrameDecoder(MAGIC);
  const frames: Frame[] = [];
  let wake: (() => void) | null = null;
  let closed = false;
  sock.on('data', (d: Buffer) => { frames.push(...dec.push(d)); wake?.(); });
  sock.on('close', () => { closed = true; wake?.(); });
  const next = async (): Promise<Frame | 'closed'> => {
    while (frames.length === 0 && !closed) await new Promise<void>((r) => (wake = r));
    return frames.shift() ?? 'closed';
  };
  const hello = await next();
  if (hello === 'closed' || hello.type !== Msg.Hello) throw new Error('no Hello');
  return { send: async (f) => { sock.write(f); return next(); }, close: () => sock.destroy() };
}

const holder: Owner = { router: 'ra', tag: 5, claim: 3 };
const taker: Owner = { router: 'rb', tag: 7, claim: 4 };

test('a newer owner\'s Fence refuses the older owner\'s changes and its Register, names the new owner, and survives a kill -9 of the server', async (t) => {
  const dir = await tmp(t);
  const s = await startDtlServer(t, dir);
  const a = await attach(t, s.address, holder);
  await a.addEntries('vd', [entry(1), entry(2)]);
  await a.flush('vd');
  // the new owner's recovery: Fence, then it reads what the old owner left
  const b = recovery(t, s.address);
  await b.fence('vd', taker);
  t.is((await b.getScoRange('vd')).entries, 2, 'reads are not fenced');
  const err = await a.addEntries('vd', [entry(3)]).then(() => null, (e: DtlError) => e);
  t.is(err?.code, 'FENCED');
  t.regex(err?.message ?? '', /router 'rb' \(owner tag 7, claim epoch 4\)/, 'the refusal names the new owner');
  for (const [what, p] of [['flush', () => a.flush('vd')], ['clear', () => a.clear('vd')], ['removeUpTo', () => a.removeUpTo('vd', 5)], ['unregister', () => a.unregister('vd')],
    ['register', () => a.register('vd', 'ra', Date.now(), holder)]] as const) {
    t.is(await code(p()), 'FENCED', `the old owner's ${what}`);
  }
  t.is((await b.getScoRange('vd')).entries, 2, 'nothing of the old owner changed the copy');
  t.regex(s.output, /vDisk vd fenced: router 'rb'.*recovered it; router 'ra'/);
  // the server dies and comes back: the fence is on its disk
  await s.kill9();
  await s.start();
  const a2 = client(t, s.address);
  await a2.connect();
  t.is(await code(a2.register('vd', 'ra', Date.now(), holder)), 'FENCED', 'the old owner after the server restart');
  t.is(await code(a2.register('vd', 'ra', Date.now())), 'FENCED', 'the old owner without an owner tag (a client from before fencing)');
  const b2 = await attach(t, s.address, taker);
  await b2.clear('vd');
  await b2.addEntries('vd', [entry(9)]);
  await b2.flush('vd');
  t.deepEqual(await b2.getScoRange('vd'), { registered: true, epoch: (await b2.getScoRange('vd')).epoch, router: 'rb', first: 10, last: 10, entries: 1 });
  // another vDisk is not fenced by this one's fence
  const other = await attach(t, s.address, holder, 'other');
  await other.addEntries('other', [entry(1)]);
  await other.flush('other');
});

test('the new owner\'s Register fences too; its own restart (next claim epoch) and a client without owner on an unfenced vDisk are not fenced', async (t) => {
  const dir = await tmp(t);
  const s = await startDtlServer(t, dir);
  const legacy = client(t, s.address);
  await legacy.connect();
  await legacy.register('old', 'rx', Date.now()); // no owner fields: as before fencing, nothing fenced
  await legacy.addEntries('old', [entry(1)]);
  await legacy.flush('old');
  const a = await attach(t, s.address, holder);
  await a.addEntries('vd', [entry(1)]);
  const b = await attach(t, s.address, taker);
  t.is(await code(a.addEntries('vd', [entry(2)])), 'FENCED', 'the older owner once the newer one registered');
  await b.addEntries('vd', [entry(3)]);
  await b.flush('vd');
  // rb restarts on the same state: the registry keeps its tag, the backend claim takes the next epoch
  b.close();
  const b2 = await attach(t, s.address, { ...taker, claim: taker.claim + 1 });
  await b2.addEntries('vd', [entry(4)]);
  await b2.flush('vd');
  // the old process of rb (a zombie of the same router, older claim epoch) is refused
  const bz = client(t, s.address);
  await bz.connect();
  t.is(await code(bz.register('vd', 'rb', Date.now(), taker)), 'FENCED', 'the same router with an older claim epoch');
  // a Fence equal to the current one changes nothing and is admitted
  await b2.fence('vd', { ...taker, claim: taker.claim + 1 });
  await b2.addEntries('vd', [entry(5)]);
  await b2.flush('vd');
  // the owner retires its copy (Clear, Flush) and drops it (Unregister): the fence stays, the older owner stays out
  await b2.clear('vd');
  await b2.flush('vd');
  await b2.unregister('vd');
  t.false((await b2.getScoRange('vd')).registered);
  const az = client(t, s.address);
  await az.connect();
  t.is(await code(az.register('vd', 'ra', Date.now(), holder)), 'FENCED', 'the older owner after the copy was dropped');
});

test('ownership per vDisk: a delegate fences the holder, the takeback fences the delegate, the holder\'s restart under the vPool\'s tag is admitted', async (t) => {
  const dir = await tmp(t);
  const s = await startDtlServer(t, dir);
  const h = await attach(t, s.address, holder);
  await h.addEntries('vd', [entry(1)]);
  const delegate: Owner = { router: 'rd', tag: 9, claim: 0 }; // a delegate holds no claim
  const d = await attach(t, s.address, delegate);
  t.is(await code(h.addEntries('vd', [entry(2)])), 'FENCED', 'the holder once the delegate registered');
  await d.addEntries('vd', [entry(3)]);
  const back: Owner = { router: 'ra', tag: 11, claim: holder.claim }; // the takeback's owner tag
  const h2 = recovery(t, s.address);
  await h2.fence('vd', back);
  t.is(await code(d.addEntries('vd', [entry(4)])), 'FENCED', 'the delegate once the holder took the vDisk back');
  // the holder restarts on its state: the vPool's tag (5, below the takeback's 11), the next claim epoch
  const h3 = await attach(t, s.address, { ...holder, claim: holder.claim + 1 });
  await h3.addEntries('vd', [entry(5)]);
  await h3.flush('vd');
  const dz = client(t, s.address);
  await dz.connect();
  t.is(await code(dz.register('vd', 'rd', Date.now(), delegate)), 'FENCED', 'the delegate after the holder\'s restart');
});

test('bad input: malformed owner fields get INVALID on a connection that stays usable, truncated ones PROTOCOL; a client from before fencing reads the FENCED status and message', async (t) => {
  const dir = await tmp(t);
  const s = await startDtlServer(t, dir);
  const r = await raw(s.address);
  const status = (f: Frame | 'closed'): string => {
    if (f === 'closed') return 'closed';
    const rd = new Reader(f.payload);
    const st = rd.u8();
    return st === 0 ? 'ok' : `${st}:${rd.str()}`;
  };
  const fence = (vd: string, router: string, tag: number, claim: number) => encodeFrame(Msg.Fence, 1, new Writer().str(vd).str(router).f64(tag).f64(claim).done());
  t.regex(status(await r.send(fence('vd', 'rb', NaN, 1))), /^4:bad owner tag NaN/, 'NaN tag: INVALID (status 4)');
  t.regex(status(await r.send(fence('vd', 'rb', -1, 1))), /^4:bad owner tag -1/, 'negative tag: INVALID');
  t.regex(status(await r.send(fence('vd', 'rb', 1.5, 1))), /^4:/, 'fractional tag: INVALID');
  t.regex(status(await r.send(fence('vd', 'rb', 0, 0))), /^4:a Fence without an owner tag/, 'a Fence of no owner: INVALID');
  t.regex(status(await r.send(fence('../x', 'rb', 1, 1))), /^4:bad vDisk id/, 'a bad vDisk id: INVALID');
  t.is(status(await r.send(fence('vd', 'rb', 7, 4))), 'ok', 'the connection is still usable');
  // a client from before fencing (Register without owner fields) gets status 6 with a message it can show
  const reg = status(await r.send(encodeFrame(Msg.Register, 2, new Writer().str('vd').str('ra').f64(Date.now()).done())));
  t.regex(reg, /^6:a request without an owner tag; the vDisk is fenced by router 'rb' \(owner tag 7, claim epoch 4\)/);
  // truncated owner fields (half of them) and a Fence without any: PROTOCOL, the connection is dropped
  t.is(status(await r.send(encodeFrame(Msg.Register, 3, new Writer().str('vd').str('ra').f64(1).f64(5).done()))), 'closed', 'a Register with half an owner');
  r.close();
  const r2 = await raw(s.address);
  t.is(status(await r2.send(encodeFrame(Msg.Fence, 4, new Writer().str('vd').str('rb').done()))), 'closed', 'a Fence without owner fields');
  r2.close();
  t.regex(s.output, /closing a DTL connection: message truncated/);
  // the fence is intact and the server serves
  const b = await attach(t, s.address, taker);
  await b.addEntries('vd', [entry(1)]);
  await b.flush('vd');
});
