/**
 * What the DTL client fuzz tests (test/dtl-client-fuzz*.test.ts) share: the seed and a seeded PRNG, a hang
 * detector, the log kept for assertions (and off the console), every rejection left unhandled even for a
 * moment, the commands with the answers a sound server gives, and the catalogue of bad answers a fake
 * server (dtl-fake-server.ts) sends in place of the Hello or of a reply.
 */
import type { ExecutionContext } from 'ava';
import { Writable } from 'node:stream';
import winston from 'winston';
import { DtlClient } from '../../dtl-client/client.js';
import { encodeFrame, MAX_PAYLOAD, Msg } from '../../dtl-client/frame.js';
import { decodeEntry, encodeEntry, type DtlEntry } from '../../dtl-client/messages.js';
import { rootLogger } from '../../util/log.js';
import { entriesFrame, errorReply, FakeDtlServer, helloFrame, rangeBody, replyFrame, type FakeConn } from './dtl-fake-server.js';
import { rng as seededRng } from './ref-disk.js';
import { runSeed } from './seed.js';

export const SEED = runSeed();
/** A call unsettled this long hangs (the client's own timeouts here are 0.3–2 s). */
export const HANG_MS = 10_000;

/** A seeded PRNG stream (ref-disk.ts's mulberry32) per test and salt, so tests do not depend on each other. */
export function rng(salt: number): () => number {
  return seededRng((SEED ^ Math.imul(salt, 0x9e3779b9)) >>> 0);
}
export type Rand = () => number;
export const int = (r: Rand, n: number) => Math.floor(r() * n);
export const bytes = (r: Rand, n: number) => Buffer.from(Array.from({ length: n }, () => int(r, 256)));

// the log: kept for the assertions, off the console (VPOOLFS_FUZZ_VERBOSE=1 shows it)
export const logLines: Array<{ level: string; message: string; [k: string]: unknown }> = [];
rootLogger.add(new winston.transports.Stream({ level: 'info', stream: new Writable({ write(chunk, _e, done) { logLines.push(JSON.parse(String(chunk))); done(); } }) }));
if (process.env.VPOOLFS_FUZZ_VERBOSE === undefined) for (const tr of rootLogger.transports) if (tr instanceof winston.transports.Console) tr.silent = true;

// a rejection without a handler crashes a router (Node's default); ava only reports those still unhandled at
// the end, so a late handler would hide one: every rejection that goes unhandled even for a moment is kept here
export const unhandled: string[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(String(reason)));

export class Hang extends Error {}

/** `p`, settled: its value or its error; throws Hang when it does not settle in HANG_MS. */
export async function settled<T>(what: string, p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Hang(`${what}: still pending after ${HANG_MS} ms`)), HANG_MS)));
  try {
    return { ok: true, value: await Promise.race([p, hang]) };
  } catch (err) {
    if (err instanceof Hang) throw err;
    return { ok: false, err };
  } finally {
    clearTimeout(timer);
  }
}

export const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the commands, and how a sound server answers them -----------------------------------------------

export const REC = encodeEntry(0, 7, 3, Buffer.alloc(4096, 1));
export const RANGE = { registered: true, epoch: 5, router: 'fake', first: 1, last: 7, entries: 1 };

export interface Op {
  name: string;
  run(c: DtlClient): Promise<unknown>;
  answer(id: number): Buffer;
}
export const OPS: Op[] = [
  { name: 'register', run: (c) => c.register('vd', 'r', 1), answer: (id) => replyFrame(id) },
  { name: 'addEntries', run: (c) => c.addEntries('vd', [REC]), answer: (id) => replyFrame(id) },
  { name: 'flush', run: (c) => c.flush('vd'), answer: (id) => replyFrame(id) },
  { name: 'getScoRange', run: (c) => c.getScoRange('vd'), answer: (id) => replyFrame(id, rangeBody(RANGE)) },
  { name: 'getEntries', run: (c) => collect(c, 'vd', 0), answer: (id) => Buffer.concat([entriesFrame(id, [REC]), replyFrame(id)]) },
  { name: 'removeUpTo', run: (c) => c.removeUpTo('vd', 3), answer: (id) => replyFrame(id) },
  { name: 'clear', run: (c) => c.clear('vd'), answer: (id) => replyFrame(id) },
  { name: 'unregister', run: (c) => c.unregister('vd'), answer: (id) => replyFrame(id) },
];

/** The entries getEntries hands out, as text (to compare with what the server sent). */
export async function collect(c: DtlClient, vdisk: string, from: number): Promise<string[]> {
  const out: string[] = [];
  await c.getEntries(vdisk, from, (e) => out.push(show(e)));
  return out;
}

export const show = (e: DtlEntry) => (e.kind === 'cluster' ? `cluster ${e.tag} ${e.address} ${e.data.toString('hex')}`
  : e.kind === 'discard' ? `discard ${e.tag} ${e.first} ${e.count} ${e.tlog}` : `resize ${e.tag} ${e.size} ${e.tlog}`);
export const showRecord = (rec: Buffer) => show(decodeEntry(rec, 0, rec.length));

/** A sound server: Hello, then every request answered as OPS says. */
export async function serveWell(c: FakeConn): Promise<void> {
  await c.send(helloFrame());
  for (let f = await c.next(); f !== null; f = await c.next()) {
    const op = OPS.find((o) => opType(o) === f!.type);
    await c.send(op !== undefined ? op.answer(f.id) : replyFrame(f.id));
  }
}

export function opType(o: Op): number {
  return ({ register: Msg.Register, addEntries: Msg.AddEntries, flush: Msg.Flush, getScoRange: Msg.GetScoRange, getEntries: Msg.GetEntries,
    removeUpTo: Msg.RemoveUpTo, clear: Msg.Clear, unregister: Msg.Unregister } as Record<string, number>)[o.name];
}

// ---- the bad answers -----------------------------------------------------------------------------------

/** What a fault sends instead of `good` (the sound answer, or the Hello when `id` is 0), and whether it then hangs up. */
export type Fault = (good: Buffer, id: number, r: Rand) => { send: Buffer; close: boolean; again?: boolean };

export const frameLen = (b: Buffer) => 12 + b.readUInt32LE(8) + 4;
export function header(type: number, id: number, length: number, magic = 0x4454, version = 1): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16LE(magic, 0);
  h.writeUInt8(version, 2);
  h.writeUInt8(type, 3);
  h.writeUInt32LE(id >>> 0, 4);
  h.writeUInt32LE(length >>> 0, 8);
  return h;
}
export function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] ^= 0xff;
  return c;
}

export const FAULTS: Record<string, Fault> = {
  'random bytes': (_g, _i, r) => ({ send: Buffer.concat([Buffer.from([int(r, 0x54)]), bytes(r, int(r, 300))]), close: r() < 0.5 }),
  'bad checksum': (g) => ({ send: flip(g.subarray(0, frameLen(g)), frameLen(g) - 1), close: false }),
  'a payload byte flipped': (g, _i, r) => ({ send: flip(g.subarray(0, frameLen(g)), 12 + int(r, frameLen(g) - 16)), close: false }),
  'truncated, then closed': (g, _i, r) => ({ send: g.subarray(0, 1 + int(r, frameLen(g) - 1)), close: true }),
  'truncated, then silent': (g, _i, r) => ({ send: g.subarray(0, 1 + int(r, frameLen(g) - 1)), close: false }),
  '4 GiB length': (g, id, r) => ({ send: Buffer.concat([header(g[3], id, 0xffffffff), bytes(r, 65536)]), close: false }),
  'length one over the limit': (g, id) => ({ send: header(g[3], id, MAX_PAYLOAD + 1), close: false }),
  'bad magic': (g) => ({ send: flip(g, 0), close: false }),
  'bad version': (g) => {
    const b = Buffer.from(g.subarray(0, frameLen(g)));
    b[2] = 2;
    return { send: b, close: false };
  },
  'wrong message type': (g, id) => ({ send: encodeFrame(id === 0 ? Msg.Reply : 0x42, id, g.subarray(12, frameLen(g) - 4)), close: false }),
  'a Hello in place of a reply': (_g, id) => ({ send: id === 0 ? Buffer.concat([helloFrame(), helloFrame()]) : helloFrame(), close: false }),
  'empty Entries frames without end': (_g, id) => ({ send: entriesFrame(id, [], 0), close: false, again: true }),
  'error reply cut short': (_g, id) => ({ send: replyFrame(id, Buffer.alloc(0), 5), close: false }),
  'unknown status': (_g, id) => ({ send: errorReply(id, 0xee, 'what'), close: false }),
  silence: () => ({ send: Buffer.alloc(0), close: false }),
  'closed at once': () => ({ send: Buffer.alloc(0), close: true }),
};
/** Faults that only make sense for a reply (the handshake does not look at ids), or only for the Hello. */
export const REPLY_FAULTS: Record<string, Fault> = {
  'wrong request id': (g, id, r) => ({ send: encodeFrame(g[3], id + 1 + int(r, 1000), g.subarray(12, frameLen(g) - 4)), close: false }),
  'status 0 with a body cut short': (_g, id) => ({ send: replyFrame(id, Buffer.from([1, 2, 3])), close: false }),
};
export const HELLO_FAULTS: Record<string, Fault> = {
  'a Hello cut short': () => ({ send: encodeFrame(Msg.Hello, 0, Buffer.from([1, 0])), close: false }),
  'a Hello asking for a secret the client has not': () => ({ send: helloFrame(1), close: false }),
};

/** Sends what `fault` makes of `good` (`again`: every 100 ms until the client hangs up). */
export async function applyFault(c: FakeConn, fault: Fault, good: Buffer, id: number, r: Rand): Promise<void> {
  const { send, close, again } = fault(good, id, r);
  if (send.length > 0) await c.send(send);
  while (again === true && !c.closed) {
    await new Promise((res) => setTimeout(res, 100));
    await c.send(send);
  }
  if (close) c.close();
}

export const CLIENT_CODES = ['PROTOCOL', 'UNREACHABLE', 'TIMEOUT', 'AUTH', 'STORAGE', 'INVALID', 'NOT_REGISTERED'];

/** One fake server: connection 0 gets `fault` (at the Hello or at the first reply), the later ones a sound server. */
export async function faultyThenSound(t: ExecutionContext, fault: Fault, where: 'hello' | 'reply', op: Op, r: Rand): Promise<FakeDtlServer> {
  return FakeDtlServer.start(t, async (c) => {
    if (c.index > 0) return serveWell(c);
    if (where === 'hello') return applyFault(c, fault, helloFrame(), 0, r);
    await c.send(helloFrame());
    const f = await c.next();
    if (f !== null) await applyFault(c, fault, op.answer(f.id), f.id, r);
  });
}
