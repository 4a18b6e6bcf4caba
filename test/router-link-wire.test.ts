/**
 * The router link's wire and server in process (beside the real-mount tests of test/follower-*.test.ts):
 * - calls and replies round-trip through encodeMessage / decodeMessage with their buffers;
 * - seeded fuzz: well-framed frames with random or mutated payloads, sent to a real LinkServer on loopback TCP
 *   (over a plain handler table): each connection that sent a bad one is closed, the server never throws, and a
 *   well-behaved client is served afterwards (VPOOLFS_SEED replays; VPOOLFS_LINK_FUZZ_ROUNDS sets the count);
 * - decodeMessage never throws anything but a PROTOCOL DtlError on random bytes.
 */
import test from 'ava';
import net from 'node:net';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrameParts } from '../dtl-client/frame.js';
import type { Handlers } from '../fuse/handlers.js';
import { LinkClient } from '../router-link/client.js';
import { LinkServer } from '../router-link/server.js';
import { badArgs, decodeMessage, encodeMessage, Link, LINK_MAGIC } from '../router-link/wire.js';
import { setLogLevel } from '../util/log.js';
import { seeded } from './helpers/seed.js';

type Cb = (code: number, ...values: unknown[]) => void;

setLogLevel('error'); // every closed connection logs a warning

/** A plain handler table: one 64 KiB file at /f, handles counted. */
function table(): { ops: Handlers; open: () => number; data: Buffer } {
  const data = Buffer.alloc(65536);
  let next = 1;
  const handles = new Set<number>();
  const ops: Handlers = {
    getattr: (p: string, cb: Cb) => (p === '/f' ? cb(0, { kind: 'file', size: data.length }) : cb(-2)),
    open: (_p: string, _f: number, cb: Cb) => { handles.add(next); cb(0, next++); },
    release: (_p: string, fh: number, cb: Cb) => { handles.delete(fh); cb(0); },
    read: (_p: string, _fh: number, buf: Buffer | undefined, len: number, off: number, cb: Cb) => {
      const out = data.subarray(off, Math.min(off + len, data.length));
      if (buf === undefined) cb(out.length, Buffer.from(out));
      else cb(out.copy(buf));
    },
    write: (_p: string, _fh: number, buf: Buffer, len: number, off: number, cb: Cb) => cb(buf.copy(data, off, 0, len)),
    readdir: (_p: string, cb: Cb) => cb(0, ['.', '..', 'f'], [undefined, undefined, { kind: 'file' }]),
  };
  return { ops, open: () => handles.size, data };
}

test('calls and replies round-trip with their buffers', (t) => {
  const b1 = Buffer.from('hello');
  const b2 = Buffer.alloc(4096, 7);
  const [op, args] = decodeMessage(Buffer.concat(encodeMessage('write', ['/f', 3, b1, 5, 0])));
  t.is(op, 'write');
  t.deepEqual(args, ['/f', 3, b1, 5, 0]);
  t.is(badArgs('write', args), null);
  const [code, values] = decodeMessage(Buffer.concat(encodeMessage(0, [b2, [undefined, { a: 1 }], 'x'])));
  t.is(code, 0);
  t.true((values[0] as Buffer).equals(b2));
  t.deepEqual(values.slice(1), [[null, { a: 1 }], 'x']);
});

test('random bytes as a payload: a PROTOCOL error or a message, never anything else', (t) => {
  const { seed, rand: r } = seeded(t);
  for (let i = 0; i < 5000; i++) {
    const good = Buffer.concat(encodeMessage('read', ['/f', 1, null, 4096, 0]));
    const p = r() < 0.5 ? Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256))) : Buffer.from(good);
    if (p === good || r() < 0.9) for (let k = 0; k < 1 + Math.floor(r() * 3) && p.length > 0; k++) p[Math.floor(r() * p.length)] = Math.floor(r() * 256);
    try {
      const [op, args] = decodeMessage(p);
      if (typeof op === 'string') badArgs(op, args);
    } catch (err) {
      t.true(err instanceof DtlError && err.code === 'PROTOCOL', `seed ${seed}, round ${i}: ${String(err)}`);
    }
  }
  t.pass();
});

test('a real LinkServer closes each connection that sends a bad call and serves a good client afterwards', async (t) => {
  const { rand: r } = seeded(t);
  const rounds = Number(process.env.VPOOLFS_LINK_FUZZ_ROUNDS ?? 60);
  t.log(`${rounds} rounds`);
  const tb = table();
  const server = await LinkServer.start({ host: '127.0.0.1', port: 0, router: 'ra', vpool: 'pool', ops: tb.ops });
  t.teardown(() => server.close());
  const bad = (): Buffer => {
    const calls: Array<[string, unknown[]]> = [
      ['write', ['/f', 1, 'text', 4, 0]], ['read', ['/f', 1, null, 1e12, 0]], ['getattr', ['f']], ['nope', []],
      ['read', ['/f', 1, null, 4096]], ['open', ['/f', 'x']], ['write', ['/f', 1, Buffer.alloc(3), 4, 0]],
    ];
    const [op, args] = calls[Math.floor(r() * calls.length)];
    const parts = encodeMessage(op, args);
    if (r() < 0.3) {
      // a mangled JSON length or body, with a correct frame checksum around it
      const p = Buffer.concat(parts);
      p[Math.floor(r() * p.length)] ^= 1 + Math.floor(r() * 255);
      return Buffer.concat(encodeFrameParts(Link.Call, 1, [p], LINK_MAGIC));
    }
    return Buffer.concat(encodeFrameParts(Link.Call, 1, parts, LINK_MAGIC));
  };
  let closed = 0;
  let answered = 0;
  for (let i = 0; i < rounds; i++) {
    const c = await LinkClient.connect({ address: server.address, vpool: 'pool' });
    const fh = (await c.call('open', ['/f', 2])).values[0] as number;
    t.is(typeof fh, 'number');
    (c as unknown as { sock: net.Socket }).sock.write(bad());
    // the connection is closed (a bad call), or the mangled bytes happened to make a good call that was answered
    const res = await c.call('getattr', ['/f']).then(() => 'answered', (err: Error) => err.message);
    if (res === 'answered') answered++;
    else closed++;
    c.close();
  }
  t.log(`${closed} connections closed, ${answered} mangled calls that were still valid`);
  t.true(closed > 0);
  // the handles of closed connections were released; a good client is served
  while (tb.open() > 0) await new Promise((res) => setTimeout(res, 10));
  const c = await LinkClient.connect({ address: server.address, vpool: 'pool' });
  const fh = (await c.call('open', ['/f', 2])).values[0] as number;
  t.is((await c.call('write', ['/f', fh, Buffer.from('abcd'), 4, 100])).code, 4);
  const rd = await c.call('read', ['/f', fh, null, 4, 100]);
  t.is(rd.code, 4);
  t.is((rd.values[0] as Buffer).toString(), 'abcd');
  t.is((await c.call('read', ['/f', fh + 1000, null, 4, 100])).code, -9, 'a handle this connection did not open: EBADF');
  t.is(server.connections, 1);
  c.close();
});
