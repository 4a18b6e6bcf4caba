/**
 * The DTL server's memory bounds, against a real server process (test/helpers/dtl-server.ts), its resident
 * memory read from /proc/<pid>/status (VmHWM: the peak over its life). The abusive side is raw sockets
 * built from the real encoders (helpers/dtl-abuse-peers.ts); the well-behaved side is the real client,
 * which must still get every entry back byte-exact while the abuse goes on:
 *
 * - 64 clients flood maximum-size AddEntries and never read a reply (most on a vDisk whose lock a
 *   GetEntries to a peer that never reads holds, so their requests pile up): each stops being read at
 *   MAX_QUEUED_BYTES;
 * - 1024 idle connections fill the server; more are refused cleanly and logged;
 * - a slowloris (frames announced, then trickled or stalled) holds at most a frame per connection and is
 *   dropped after STALL_MS; with a secret, a peer that has not authenticated holds no more than an Auth frame;
 * - requests that cost more than their payload (replies never read, tiny requests piling up) are bounded
 *   by the unsent-reply limit and the per-request overhead; the peers are dropped after STALL_MS;
 * - 2,000 vDisks: after a restart the server holds an index, not the entries, and returns every entry.
 *
 * Each bound is RUNTIME (a fixed allowance for Node itself) plus, per connection, what the server's
 * constants let it hold (PER_CONNECTION and the like below, derived next to them). The bounds are loose on
 * purpose (worst cases, the machine is shared); an unbounded server goes well past them.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DtlClient } from '../dtl-client/client.js';
import { HEADER_BYTES, MAX_PAYLOAD, Msg, TRAILER_BYTES } from '../dtl-client/frame.js';
import { encodeEntry, encodeResize, type DtlEntry } from '../dtl-client/messages.js';
import { MAX_CONNECTIONS, MAX_QUEUED_BYTES, MAX_UNAUTHENTICATED_BYTES, MAX_UNSENT_BYTES, REQUEST_OVERHEAD, STALL_MS } from '../dtl-client/server.js';
import { CHUNK_BYTES, SEGMENT_BYTES } from '../dtl-client/store.js';
import { header, maxAddEntries, memoryOf, MiB, mib, rawPeer, request, send, until, type RawPeer } from './helpers/dtl-abuse-peers.js';
import { startDtlServer, type DtlServerProcess } from './helpers/dtl-server.js';

/** Node, V8 and the CLI's modules (an idle server is ~80 MiB here), heap slack and garbage not collected yet. */
const RUNTIME = 128 * MiB;
/** What one socket read hands the server at most. */
const READ_CHUNK = 64 * 1024;
const FRAME = HEADER_BYTES + MAX_PAYLOAD + TRAILER_BYTES;
/**
 * One connection flooding requests: queued up to MAX_QUEUED_BYTES, plus the frame that crossed it and the
 * rest of its read chunk, plus a partial frame (its chunks), plus the joined copy of a frame just completed
 * (garbage until the next GC).
 */
const PER_CONNECTION = MAX_QUEUED_BYTES + 3 * (FRAME + READ_CHUNK);
/**
 * The same, reading no reply: MAX_UNSENT_BYTES unsent, then one more reply (at most a frame), and the
 * segment a GetEntries streams from (SEGMENT_BYTES, plus the AddEntries run that went past it).
 */
const PER_DEAF_CONNECTION = PER_CONNECTION + MAX_UNSENT_BYTES + FRAME + SEGMENT_BYTES + FRAME;

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

async function tmp(t: ExecutionContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'vpoolfs-dtlmem-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

function client(t: ExecutionContext, address: string, secret?: Buffer): DtlClient {
  const c = new DtlClient({ servers: [address], secret, timeoutMs: 20_000 });
  t.teardown(() => c.close());
  return c;
}

/** Cluster entry n of vDisk number `vd` (tag 1 + n/4): the data says whose it is. */
function cluster(vd: number, n: number): Buffer {
  const data = Buffer.alloc(4096, (vd * 31 + n) & 0xff);
  data.writeUInt32LE(vd, 0);
  data.writeUInt32LE(n, 4);
  return encodeEntry(0, 1 + (n >> 2), n, data);
}

/** Every entry of `vdisk` equals the records `want`, byte for byte (tag, address or size, data). */
async function sameEntries(c: DtlClient, vdisk: string, want: Buffer[]): Promise<boolean> {
  const got: DtlEntry[] = [];
  await c.getEntries(vdisk, 0, (e) => got.push(e.kind === 'cluster' ? { ...e, data: Buffer.from(e.data) } : e));
  if (got.length !== want.length) return false;
  return got.every((e, i) => {
    const w = want[i];
    if (e.kind === 'resize') return w.readUInt8(8) === 1 && e.tag === w.readUInt32LE(9) && e.size === w.readDoubleLE(13);
    if (e.kind === 'discard') return false; // the test sends none
    return w.readUInt8(8) === 0 && e.tag === w.readUInt32LE(9) && e.address === w.readDoubleLE(13) && e.data.equals(w.subarray(21));
  });
}

/** The well-behaved client's round: Register, AddEntries, Flush, GetEntries (byte-exact). */
async function wellBehaved(t: ExecutionContext, address: string, vdisk: string, vd: number, secret?: Buffer): Promise<void> {
  const c = client(t, address, secret);
  await c.register(vdisk, 'good-router', 7);
  const recs = [...range(0, 40).map((n) => cluster(vd, n)), encodeResize(10, 2 * MiB, 3)];
  await c.addEntries(vdisk, recs.slice(0, 20));
  await c.addEntries(vdisk, recs.slice(20));
  await c.flush(vdisk);
  t.true(await sameEntries(c, vdisk, recs), `the well-behaved client's entries of ${vdisk} came back`);
  c.close();
}

/**
 * Fills `vdisk` with `mb` MiB, then a peer that never reads asks for it all: the server waits for that
 * peer to take the entries, holding the vDisk's lock, so every other request on `vdisk` waits.
 */
async function holdVdisk(t: ExecutionContext, address: string, vdisk: string, mb: number): Promise<RawPeer> {
  const c = client(t, address);
  await c.register(vdisk, 'r', 1);
  const recs = range(0, 1000).map((n) => encodeEntry(0, 1, n, Buffer.alloc(4096, n & 0xff)));
  for (let i = 0; i < Math.ceil(mb / 4); i++) await c.addEntries(vdisk, recs);
  c.close();
  const holder = await rawPeer(address);
  await send(holder.sock, request(Msg.GetEntries, 1, vdisk, (w) => w.u32(0)));
  return holder;
}

/** Waits until `progress()` has not moved for 2 s (every flooder is blocked or done), at most `ms`. */
async function settled(progress: () => number, ms: number): Promise<void> {
  let last = -1;
  let still = 0;
  await until(() => {
    const p = progress();
    still = p === last ? still + 1 : 0;
    last = p;
    return still >= 4;
  }, ms, 500);
}

function peak(t: ExecutionContext, srv: DtlServerProcess, bound: number, what: string): void {
  const { rss, hwm } = memoryOf(srv.child.pid!);
  t.log(`${what}: VmRSS ${mib(rss)}, VmHWM ${mib(hwm)}, bound ${mib(bound)}`);
  t.true(hwm <= bound, `${what}: the server's peak resident memory ${mib(hwm)} is over the bound ${mib(bound)}`);
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

test('64 clients flood maximum-size AddEntries and never read: memory stays bounded, a good client is served', async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  await holdVdisk(t, srv.address, 'hot', 48);
  const HOT = 56; // on the held vDisk: their requests pile up
  const OWN = 8; // each on its own vDisk: written as fast as the server can
  const FRAMES = 10; // each: 40 MiB, several times what the server may hold for it
  const hotFrame = maxAddEntries('hot', 1);
  const peers = await Promise.all(range(0, HOT + OWN).map(() => rawPeer(srv.address)));
  let sent = 0;
  const floods = peers.map(async (p, i) => {
    let frame = hotFrame;
    if (i >= HOT) {
      await send(p.sock, request(Msg.Register, 1, `own-${i}`, (w) => w.str('abuser').f64(1)));
      frame = maxAddEntries(`own-${i}`, 1, 2);
    }
    for (let k = 0; k < FRAMES && (await send(p.sock, frame)); k++) sent++;
  });
  await settled(() => sent, 60_000);
  t.log(`frames taken by the kernel or the server: ${sent} of ${(HOT + OWN) * FRAMES}`);
  await wellBehaved(t, srv.address, 'good', 1);
  // 65 connections (the holder's included), derived above; the good client's are short-lived
  peak(t, srv, RUNTIME + (HOT + OWN) * PER_CONNECTION + PER_DEAF_CONNECTION, '64 flooders');
  t.true(srv.alive && count(srv.output, 'closing a DTL connection') === 0, 'nothing was dropped: these peers only wait');
  await srv.kill9(); // before the held requests reach the disk
  await Promise.all(floods);
});

test(`${MAX_CONNECTIONS} idle connections fill the server: more are refused cleanly and logged, then it serves again`, async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  const idle = await Promise.all(range(0, MAX_CONNECTIONS).map(() => rawPeer(srv.address, true)));
  t.teardown(() => idle.forEach((p) => p.sock.destroy()));
  t.true(await until(() => idle.every((p) => p.received > 0), 30_000), 'every connection up to the limit got its Hello');
  const extra = await Promise.all(range(0, 8).map(() => rawPeer(srv.address, true)));
  t.true(await until(() => extra.every((p) => p.sock.destroyed), 10_000), 'the connections over the limit are closed');
  t.deepEqual(extra.map((p) => p.received), extra.map(() => 0), 'a refused connection is closed without a Hello');
  extra.forEach((p) => p.sock.destroy());
  t.true(await until(() => count(srv.output, 'refusing a DTL connection: too many at once') >= 8, 10_000), 'each refusal is logged');
  peak(t, srv, RUNTIME + (MAX_CONNECTIONS + 8) * READ_CHUNK, `${MAX_CONNECTIONS} idle connections`);
  idle.forEach((p) => p.sock.destroy());
  await Promise.all(idle.map((p) => p.closed));
  t.true(srv.alive && count(srv.output, '"level":"error"') === 0, 'no error, no crash');
  // the server sees the closes a moment later; until then a new connection may still be refused
  let served = false;
  for (let i = 0; i < 50 && !served; i++) {
    served = await wellBehaved(t, srv.address, 'after', 2).then(() => true, () => new Promise((r) => setTimeout(() => r(false), 200)));
  }
  t.true(served, 'the server serves again once the idle connections are gone');
});

test('a slowloris (frames announced, then trickled or stalled) holds a frame per connection at most and is dropped', async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  const STALLED = 32; // almost all of a maximum frame, then nothing
  const TRICKLE = 32; // 1 KiB every 250 ms: the frame would take hours
  const HEADERS = 8; // half a header, then nothing
  const peers = await Promise.all(range(0, STALLED + TRICKLE + HEADERS).map(() => rawPeer(srv.address, true)));
  const body = Buffer.alloc(MAX_PAYLOAD - 1, 0x33);
  const timers: NodeJS.Timeout[] = [];
  t.teardown(() => timers.forEach(clearInterval));
  await Promise.all(peers.map(async (p, i) => {
    if (i >= STALLED + TRICKLE) return send(p.sock, header(Msg.AddEntries, 1, MAX_PAYLOAD).subarray(0, 6));
    await send(p.sock, header(Msg.AddEntries, 1, MAX_PAYLOAD));
    if (i < STALLED) return send(p.sock, body);
    timers.push(setInterval(() => p.sock.write(body.subarray(0, 1024)), 250));
  }));
  await new Promise((r) => setTimeout(r, 1000));
  await wellBehaved(t, srv.address, 'good', 3);
  peak(t, srv, RUNTIME + peers.length * (FRAME + READ_CHUNK), 'slowloris');
  t.log(`waiting up to ${STALL_MS / 1000 + 30} s for the server to drop them`);
  const dropped = await until(() => peers.every((p) => p.sock.destroyed), STALL_MS + 30_000, 500);
  t.true(dropped, `the server dropped ${peers.filter((p) => p.sock.destroyed).length} of ${peers.length} stalled connections`);
  t.is(count(srv.output, 'a frame not completed in time'), peers.length, 'each drop is logged');
  await wellBehaved(t, srv.address, 'good2', 4);
});

test('a server with a secret: peers that have not authenticated hold no more than an Auth frame each', async (t) => {
  const dir = await tmp(t);
  const secret = Buffer.from('correct horse battery staple');
  await writeFile(path.join(dir, 'secret'), secret);
  const srv = await startDtlServer(t, path.join(dir, 'data'), ['--secret-file', path.join(dir, 'secret')]);
  const PEERS = 64;
  const peers = await Promise.all(range(0, PEERS).map(() => rawPeer(srv.address, true)));
  const body = Buffer.alloc(MAX_PAYLOAD - 1, 0x44);
  // an Auth frame announcing the maximum payload, then almost all of it (the handshake timer is 10 s)
  await Promise.all(peers.map(async (p) => (await send(p.sock, header(Msg.Auth, 0, MAX_PAYLOAD))) && send(p.sock, body)));
  await wellBehaved(t, srv.address, 'good', 8, secret);
  peak(t, srv, RUNTIME + PEERS * (MAX_UNAUTHENTICATED_BYTES + READ_CHUNK), 'unauthenticated peers');
  t.true(await until(() => peers.every((p) => p.sock.destroyed), 20_000), 'the unauthenticated peers were dropped');
});

test('replies never read: the server stops serving (and reading) that peer, and drops it', async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  const c = client(t, srv.address);
  await c.register('big', 'r'.repeat(60_000), 1); // GetScoRange on it: a 21-byte request, a 60 KB reply
  c.close();
  const PEERS = 8;
  const bound = RUNTIME + PEERS * PER_DEAF_CONNECTION;
  const peers = await Promise.all(range(0, PEERS).map(() => rawPeer(srv.address)));
  const batch = Buffer.concat(range(0, 500).map((i) => request(Msg.GetScoRange, i + 1, 'big')));
  let sent = 0;
  const floods = peers.map(async (p) => {
    // 4,000 requests each: 240 MB of replies; stop early if the server is over the bound already
    for (let k = 0; k < 8 && memoryOf(srv.child.pid!).rss < bound && (await send(p.sock, batch)); k++) sent++;
  });
  await settled(() => sent, 60_000);
  peak(t, srv, bound, 'unread replies, before the good client');
  await wellBehaved(t, srv.address, 'good', 5);
  peak(t, srv, bound, 'unread replies');
  const logged = await until(() => count(srv.output, 'the client does not take its replies') === PEERS, STALL_MS + 30_000, 500);
  t.true(logged, 'each peer that never read was dropped, and that is logged');
  peers.forEach((p) => p.sock.resume()); // now read: what the server sent, then its close
  t.true(await Promise.race([Promise.all(peers.map((p) => p.closed)).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]), 'the peers see the close');
  await Promise.all(floods);
});

test('tiny requests piling up behind a held vDisk are bounded by their count, not just their bytes', async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  await holdVdisk(t, srv.address, 'hot', 24);
  const PEERS = 4;
  // each queued request counts its payload plus REQUEST_OVERHEAD against MAX_QUEUED_BYTES
  const bound = RUNTIME + PEERS * PER_CONNECTION;
  t.log(`a queue holds at most ${Math.ceil(MAX_QUEUED_BYTES / (6 + REQUEST_OVERHEAD))} 6-byte requests`);
  const peers = await Promise.all(range(0, PEERS).map(() => rawPeer(srv.address)));
  const batch = Buffer.concat(range(0, 20_000).map((i) => request(Msg.Flush, i + 1, 'hot')));
  let sent = 0;
  const floods = peers.map(async (p) => {
    // 400,000 Flush requests each (8.8 MB on the wire); stop early if the server is over the bound already
    for (let k = 0; k < 20 && memoryOf(srv.child.pid!).rss < bound && (await send(p.sock, batch)); k++) sent++;
  });
  await settled(() => sent, 60_000);
  peak(t, srv, bound, 'tiny requests, before the good client');
  await wellBehaved(t, srv.address, 'good', 6);
  peak(t, srv, bound, 'tiny requests');
  await srv.kill9();
  await Promise.all(floods);
});

test('2,000 vDisks: after a restart the server holds an index, not the entries, and returns every entry byte-exact', async (t) => {
  const srv = await startDtlServer(t, await tmp(t));
  const VDISKS = 2000;
  const PER = 16; // 16 clusters and a resize: 66 KB each, 132 MB in all
  const recs = (vd: number) => [...range(0, PER).map((n) => cluster(vd, n)), encodeResize(PER, (vd + 1) * MiB, 9)];
  const workers = range(0, 8).map(() => client(t, srv.address));
  await Promise.all(workers.map(async (c, w) => {
    for (let vd = w; vd < VDISKS; vd += workers.length) {
      await c.register(`vd-${vd}`, 'r', vd);
      await c.addEntries(`vd-${vd}`, recs(vd));
      await c.flush(`vd-${vd}`);
    }
  }));
  await srv.stop();
  await srv.start();
  // an index per segment (a few hundred bytes a vDisk: 4 KiB is generous), one segment read at a time
  const bound = RUNTIME + VDISKS * 4096 + SEGMENT_BYTES + FRAME + CHUNK_BYTES;
  peak(t, srv, bound, `${VDISKS} vDisks loaded`);
  const bad: number[] = [];
  await Promise.all(workers.map(async (c, w) => {
    for (let vd = w; vd < VDISKS; vd += workers.length) if (!(await sameEntries(c, `vd-${vd}`, recs(vd)))) bad.push(vd);
  }));
  t.deepEqual(bad, [], 'vDisks whose entries did not come back byte-exact');
  peak(t, srv, bound, `${VDISKS} vDisks read back`);
});
