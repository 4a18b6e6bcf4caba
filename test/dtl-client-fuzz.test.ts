/**
 * The DTL client against a broken or malicious server: a fake one (helpers/dtl-fake-server.ts) over real
 * TCP on loopback, for a few seconds per scenario (the vPool side: dtl-client-fuzz-volume.test.ts). What
 * it proves:
 * - every kind of bad answer (random bytes, a bad checksum, a truncated frame, a 4 GiB length, the wrong
 *   message type or request id, an error reply cut short, silence...) in place of the Hello or of the reply
 *   to any command fails that command with a DtlError, at once or at the client's timeout: nothing hangs,
 *   nothing else is thrown; the next command reconnects and works;
 * - with a shared secret, a server that cannot prove it (or answers the Auth with anything else) is refused;
 * - seeded random damage to valid server transcripts: the same, and no damaged entry is ever handed out;
 * - an announced 4 GiB frame is refused from its header (nothing of it is buffered); replies out of order
 *   are refused; a client closed while it connects leaves no connection open.
 * Seeded: the seed is logged; VPOOLFS_SEED=<n> replays a run.
 */
import test from 'ava';
import { clientMac, serverMac } from '../dtl-client/auth.js';
import { DtlClient } from '../dtl-client/client.js';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, FrameDecoder, Msg } from '../dtl-client/frame.js';
import { encodeEntry, encodeResize } from '../dtl-client/messages.js';
import { bytes, CLIENT_CODES, FAULTS, faultyThenSound, HANG_MS, header, HELLO_FAULTS, int, OPS, REC, REPLY_FAULTS, rng, SEED, serveWell, settled, showRecord, unhandled, type Fault, type Op } from './helpers/dtl-fake-faults.js';
import { until } from './helpers/until.js';
import { entriesFrame, errorReply, FakeDtlServer, helloFrame, replyFrame } from './helpers/dtl-fake-server.js';

test('every kind of bad answer, at the Hello or at any reply: a DtlError (at once or at the timeout), then a reconnect that works', async (t) => {
  t.log(`seed ${SEED} (VPOOLFS_SEED=${SEED} replays this run)`);
  const r = rng(1);
  const cases: Array<{ name: string; run: () => Promise<string | null> }> = [];
  const add = (name: string, fault: Fault, where: 'hello' | 'reply', op: Op) => cases.push({
    name: `${name} at the ${where === 'hello' ? 'Hello' : 'reply'} to ${op.name}`,
    run: async () => {
      const fake = await faultyThenSound(t, fault, where, op, r);
      const c = new DtlClient({ servers: [fake.address], timeoutMs: 1000 });
      try {
        const first = await settled('the faulty call', op.run(c));
        if (first.ok) return 'the faulty call succeeded';
        if (!(first.err instanceof DtlError) || !CLIENT_CODES.includes(first.err.code)) return `not a DtlError: ${String(first.err)}`;
        const again = await settled('the call after it', op.run(c));
        if (!again.ok) return `the call after it failed: ${(again.err as Error).message}`;
        if (op.name === 'getEntries' && (again.value as string[])[0] !== showRecord(REC)) return 'the call after it handed out a wrong entry';
        if (fake.errors.length > 0) return fake.errors.join('\n');
        return null;
      } catch (err) {
        return (err as Error).message;
      } finally {
        c.close();
      }
    },
  });
  for (const [name, fault] of Object.entries({ ...FAULTS, ...REPLY_FAULTS })) for (const op of OPS) add(name, fault, 'reply', op);
  Object.entries({ ...FAULTS, ...HELLO_FAULTS }).forEach(([name, fault], i) => add(name, fault, 'hello', OPS[i % OPS.length]));
  const results = await Promise.all(cases.map(async (k) => ({ name: k.name, problem: await k.run() })));
  const bad = results.filter((x) => x.problem !== null).map((x) => `${x.name}: ${x.problem}`);
  t.deepEqual(bad, []);
  t.log(`${cases.length} cases`);
});

test('with a shared secret: a server that cannot prove it, or answers the Auth with anything else, is refused; one that proves it is taken', async (t) => {
  const secret = Buffer.from('a shared secret of the fuzz test');
  const answers: Record<string, (mine: Buffer, theirs: Buffer, id: number) => Buffer | null> = {
    'the right proof': (mine, theirs, id) => encodeFrame(Msg.AuthOk, id, serverMac(secret, theirs, mine)),
    'a proof with another secret': (mine, theirs, id) => encodeFrame(Msg.AuthOk, id, serverMac(Buffer.from('not the shared secret at all'), theirs, mine)),
    'a proof cut short': (mine, theirs, id) => encodeFrame(Msg.AuthOk, id, serverMac(secret, theirs, mine).subarray(0, 31)),
    'the client\'s own proof echoed': (mine, theirs, id) => encodeFrame(Msg.AuthOk, id, clientMac(secret, mine, theirs)),
    'an error reply': (_m, _t, id) => errorReply(id, 2, 'wrong secret'),
    'a Hello again': () => helloFrame(1),
    'random bytes': () => Buffer.from('garbage, not a frame at all'),
    silence: () => null,
  };
  const outcomes: Record<string, string> = {};
  await Promise.all(Object.entries(answers).map(async ([name, answer]) => {
    const mine = Buffer.alloc(32, 0x33);
    const fake = await FakeDtlServer.start(t, async (c) => {
      await c.send(helloFrame(1, mine));
      const f = await c.next();
      if (f === null || f.type !== Msg.Auth || f.payload.length !== 64) return c.close();
      const a = answer(mine, f.payload.subarray(0, 32), f.id);
      if (a !== null) await c.send(a);
      for (let g = await c.next(); g !== null; g = await c.next()) await c.send(replyFrame(g.id));
    });
    const c = new DtlClient({ servers: [fake.address], secret, timeoutMs: 1000 });
    t.teardown(() => c.close());
    const res = await settled(name, c.flush('vd'));
    outcomes[name] = res.ok ? 'ok' : res.err instanceof DtlError ? res.err.code : `not a DtlError: ${String(res.err)}`;
  }));
  t.is(outcomes['the right proof'], 'ok');
  for (const [name, code] of Object.entries(outcomes)) if (name !== 'the right proof') t.true(['AUTH', 'UNREACHABLE'].includes(code), `${name}: ${code}`);
  // and a server without a secret is refused by a client with one
  const open = await FakeDtlServer.start(t, serveWell);
  const c = new DtlClient({ servers: [open.address], secret, timeoutMs: 1000 });
  t.teardown(() => c.close());
  await t.throwsAsync(c.flush('vd'), { instanceOf: DtlError, code: 'AUTH' });
});

test('seeded random damage to valid server transcripts: a DtlError or a right answer, never a hang, never a damaged entry', async (t) => {
  t.log(`seed ${SEED} (VPOOLFS_SEED=${SEED} replays this run)`);
  const deadline = Date.now() + 4000;
  const outcomes = new Map<string, number>();
  const problems: string[] = [];
  const worker = async (w: number) => {
    const r = rng(100 + w);
    while (Date.now() < deadline && problems.length === 0) {
      const op = OPS[int(r, OPS.length)];
      // entries of every kind, so that a mutation may land anywhere in them
      const sent = Array.from({ length: 1 + int(r, 4) }, () => (r() < 0.3 ? encodeResize(int(r, 9), int(r, 2 ** 30), int(r, 9)) : encodeEntry(0, int(r, 9), int(r, 2 ** 20), bytes(r, 4096))));
      const mutate = (b: Buffer): Buffer => {
        let out = Buffer.from(b);
        for (let m = 1 + int(r, 3); m > 0; m--) {
          const at = int(r, out.length + 1);
          switch (int(r, 6)) {
            case 0: if (out.length > 0) out[Math.min(at, out.length - 1)] ^= 1 << int(r, 8); break;
            case 1: out = Buffer.concat([out.subarray(0, at), bytes(r, 1 + int(r, 16)), out.subarray(at)]); break;
            case 2: out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + int(r, 16)))]); break;
            case 3: out = out.subarray(0, at); break;
            case 4: if (at + 4 <= out.length) out.writeUInt32LE(int(r, 2 ** 32), at); break;
            default: out = Buffer.concat([out, out.subarray(at)]);
          }
        }
        return out;
      };
      const damageHello = r() < 0.2;
      const fake = await FakeDtlServer.start(t, async (c) => {
        const hello = helloFrame(0, bytes(r, 32));
        await c.send(damageHello ? mutate(hello) : hello);
        const f = await c.next();
        if (f === null) return;
        const answer = op.name === 'getEntries' ? Buffer.concat([entriesFrame(f.id, sent.slice(0, 2)), entriesFrame(f.id, sent.slice(2)), replyFrame(f.id)]) : op.answer(f.id);
        const bad = damageHello ? answer : mutate(answer);
        for (let pos = 0; pos < bad.length;) { // in pieces of random sizes
          const n = 1 + int(r, 64);
          await c.send(bad.subarray(pos, pos + n));
          pos += n;
        }
        if (r() < 0.5) c.close();
      });
      const c = new DtlClient({ servers: [fake.address], timeoutMs: 300 });
      try {
        const res = await settled(op.name, op.run(c));
        const key = res.ok ? 'answered' : res.err instanceof DtlError ? res.err.code : `not a DtlError: ${String(res.err)}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        if (!res.ok && !(res.err instanceof DtlError)) problems.push(`${op.name}: ${key}`);
        if (res.ok && op.name === 'getEntries') {
          for (const e of res.value as string[]) if (!sent.some((s) => showRecord(s) === e)) problems.push('getEntries handed out an entry the server never sent');
        }
      } catch (err) {
        problems.push((err as Error).message);
      } finally {
        c.close();
        await fake.stop();
      }
      if (fake.errors.length > 0) problems.push(...fake.errors);
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  t.log(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  t.deepEqual(problems, []);
});

test('an announced 4 GiB frame is refused from its header: nothing of it is buffered', async (t) => {
  const d = new FrameDecoder();
  t.throws(() => d.push(header(Msg.Reply, 1, 0xffffffff)), { instanceOf: DtlError, message: /over the limit/ });
  t.true(d.pending <= 12);
  // a sound frame read together with the bad header still counts (what the client does must not depend on how TCP cut the stream)
  const got = new FrameDecoder().pushSome(Buffer.concat([replyFrame(7), header(Msg.Reply, 8, 0xffffffff)]));
  t.deepEqual(got.frames.map((f) => f.id), [7]);
  t.is(got.error?.code, 'PROTOCOL');
  // over TCP: the fake announces 4 GiB as its reply and then streams as fast as the client takes it
  const before = process.memoryUsage().arrayBuffers;
  const chunk = Buffer.alloc(2 ** 20, 0x41);
  const fake = await FakeDtlServer.start(t, async (c) => {
    await c.send(helloFrame());
    const f = await c.next();
    if (f === null) return;
    await c.send(header(Msg.Reply, f.id, 0xffffffff));
    for (let sent = 0; sent < 256 * 2 ** 20 && !c.closed; sent += chunk.length) if (!(await c.send(chunk))) break;
  });
  const c = new DtlClient({ servers: [fake.address], timeoutMs: 5000 });
  t.teardown(() => c.close());
  const res = await settled('flush', c.flush('vd'));
  t.true(!res.ok && res.err instanceof DtlError && res.err.code === 'PROTOCOL', `refused as a protocol error: ${res.ok ? 'answered' : String(res.err)}`);
  await settled('the client hangs up', fake.conns[0].gone());
  const grown = process.memoryUsage().arrayBuffers - before;
  t.log(`the fake got ${(fake.conns[0].bytesOut / 2 ** 20).toFixed(1)} MiB into the kernel before the client hung up; buffers grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
  t.true(fake.conns[0].bytesOut < 64 * 2 ** 20, 'the client stopped reading at the header, not after buffering the frame');
  t.true(grown < 64 * 2 ** 20, `buffers grew ${grown} bytes`);
});

test('replies out of order are refused: the protocol answers requests in order', async (t) => {
  const fake = await FakeDtlServer.start(t, async (c) => {
    await c.send(helloFrame());
    const a = await c.next();
    const b = await c.next();
    if (a === null || b === null) return;
    await c.send(replyFrame(b.id)); // the second request's answer first
    await c.send(replyFrame(a.id));
  });
  const c = new DtlClient({ servers: [fake.address], timeoutMs: 2000 });
  t.teardown(() => c.close());
  await c.connect();
  const [a, b] = await Promise.all([settled('a', c.flush('vd')), settled('b', c.clear('vd'))]);
  for (const x of [a, b]) t.true(!x.ok && x.err instanceof DtlError && x.err.code === 'PROTOCOL', `refused: ${x.ok ? 'answered' : String(x.err)}`);
});

test('a Hello with a frame nobody asked for in the same read: not connected, the client moves on to the next server', async (t) => {
  const first = await FakeDtlServer.start(t, (c) => c.send(Buffer.concat([helloFrame(), helloFrame()])));
  const second = await FakeDtlServer.start(t, serveWell);
  const c = new DtlClient({ servers: [first.address, second.address], timeoutMs: 2000 });
  t.teardown(() => c.close());
  t.is(await c.connect(), second.address);
  await c.flush('vd');
});

test('a client closed while it connects leaves no connection open', async (t) => {
  const fake = await FakeDtlServer.start(t, async (c) => {
    await new Promise((r) => setTimeout(r, 200)); // a slow Hello: close() comes first
    await serveWell(c);
  });
  const c = new DtlClient({ servers: [fake.address], timeoutMs: 2000 });
  const p = settled('connect', c.connect());
  await until('connected', () => fake.conns.length === 1);
  c.close();
  const res = await p;
  t.true(!res.ok && res.err instanceof DtlError && res.err.code === 'CLOSED', `connect() after close(): ${res.ok ? 'connected' : String(res.err)}`);
  await until('the client hung up', () => fake.conns[0].closed, HANG_MS).catch(() => t.fail('the connection made after close() stays open'));
});

test.after.always('no rejection was left without a handler, even for a moment (a router would crash)', (t) => {
  t.deepEqual(unhandled, []);
});
