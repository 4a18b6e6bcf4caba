/**
 * Bad NBD clients (a raw socket client, test/helpers/nbd-raw.ts) against a real daemon: each gets a clear
 * protocol error, or its connection closed with the reason in the daemon's log, and the daemon and the
 * other clients go on: unknown options and commands, bad magic, truncated handshakes, oversized options
 * and requests, requests past the export, and a client that sends requests and never reads the replies
 * (the daemon's memory stays bounded while another client works).
 */
import { readFileSync } from 'node:fs';
import { truncate, writeFile } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import { fuseTest } from './helpers/mount.js';
import { ok, q, startNbdMount, type NbdMount } from './helpers/nbd.js';
import { ERR_BIT, RawNbd, u32 } from './helpers/nbd-raw.js';

const test = fuseTest();
const MiB = 2 ** 20;
const EINVAL = 22;
const ENOSPC = 28;

async function setup(t: ExecutionContext): Promise<NbdMount> {
  const n = await startNbdMount(t);
  await writeFile(n.m.p('d.img'), '');
  await truncate(n.m.p('d.img'), 16 * MiB);
  await ok(t, `qemu-io -f raw -c 'write -P 0x5a 0 64k' ${q(n.uri('d.img'))}`);
  return n;
}

/** The daemon is alive and a well-behaved client still reads what was written. */
async function othersGoOn(t: ExecutionContext, n: NbdMount): Promise<void> {
  t.true(n.m.alive, 'the daemon is alive');
  await ok(t, `qemu-io -f raw -c 'read -P 0x5a 0 64k' ${q(n.uri('d.img'))}`);
}

test('handshake: unknown options are refused and negotiation goes on; broken handshakes close with a reason', async (t) => {
  const n = await setup(t);
  const c = await RawNbd.connect(n.sock);
  await c.greet();
  c.sendOption(99, Buffer.from('whatever'));
  const r = await c.optionReply();
  t.is(r.option, 99);
  t.is(r.type, ERR_BIT + 1, 'NBD_REP_ERR_UNSUP');
  t.regex(r.data.toString(), /option 99 is not supported/);
  // a malformed GO (name length past the data) is NBD_REP_ERR_INVALID, and GO then works
  c.sendOption(7, Buffer.concat([u32(1000), Buffer.from('d.img'), Buffer.from([0, 0])]));
  t.is((await c.optionReply()).type, ERR_BIT + 3, 'NBD_REP_ERR_INVALID');
  c.sendOption(3, Buffer.from('x'));
  t.is((await c.optionReply()).type, ERR_BIT + 3, 'LIST with data: INVALID');
  c.sendOption(5);
  const tls = await c.optionReply();
  t.is(tls.type, ERR_BIT + 2, 'STARTTLS on a listener without TLS: NBD_REP_ERR_POLICY');
  // a name past what a path may be: refused, and the connection goes on
  const long = Buffer.from('x'.repeat(3000));
  c.sendOption(6, Buffer.concat([u32(long.length), long, Buffer.from([0, 0])]));
  const lr = await c.optionReply();
  t.true(lr.type === ERR_BIT + 3 || lr.type === ERR_BIT + 6, `INFO of a 3000-byte name: ${lr.type} ${lr.data.toString().slice(0, 100)}`);
  c.sendOption(3);
  let names = '';
  for (let r2 = await c.optionReply(); r2.type === 2; r2 = await c.optionReply()) names += r2.data.subarray(4).toString() + ' ';
  t.is(names.trim(), 'd.img', 'LIST still answers');
  c.destroy();

  const bad: { what: string; log: RegExp; run: (c: RawNbd) => Promise<void> }[] = [
    { what: 'client flags without fixed newstyle', log: /does not speak fixed newstyle/, run: async (c) => { await c.greet(0); } },
    { what: 'unknown client flags', log: /unknown client flags/, run: async (c) => { await c.greet(0x80000001); } },
    { what: 'bad option magic', log: /bad option magic/, run: async (c) => { await c.greet(); c.write(Buffer.alloc(16, 0x41)); } },
    {
      what: 'an option of 1 MiB', log: /option 6 with 1048576 bytes/,
      run: async (c) => {
        await c.greet();
        c.write(Buffer.concat([Buffer.from('IHAVEOPT'), u32(6), u32(MiB)]));
        const r = await c.optionReply();
        t.is(r.type, ERR_BIT + 9, 'NBD_REP_ERR_TOO_BIG');
      },
    },
    { what: 'EXPORT_NAME of an unknown export', log: /NBD_OPT_EXPORT_NAME: no vDisk nope/, run: async (c) => { await c.greet(); c.sendOption(1, Buffer.from('nope')); } },
  ];
  for (const b of bad) {
    const c = await RawNbd.connect(n.sock);
    await b.run(c);
    await c.closed;
    t.true(c.ended, `${b.what}: closed`);
    t.regex(n.m.log, b.log, b.what);
  }
  // truncated: half an option, then the client goes away
  const tr = await RawNbd.connect(n.sock);
  await tr.greet();
  tr.write(Buffer.concat([Buffer.from('IHAVEOPT'), u32(7), u32(100), Buffer.from('d.i')]));
  tr.socket.end();
  await tr.closed;
  await othersGoOn(t, n);
});

test('transmission: refused requests go on, framing errors close with an error reply', async (t) => {
  const n = await setup(t);
  const c = await RawNbd.connect(n.sock);
  t.is(await c.go('d.img'), 16 * MiB);
  c.request(0, 16 * MiB - 4096, 8192, 1n);
  let r = await c.chunk();
  t.is(r.cookie, 1n);
  t.is(r.error, EINVAL);
  t.regex(r.message!, /past the end of the export/);
  c.request(1, 16 * MiB, 4096, 2n, 0, Buffer.alloc(4096, 1)); // its payload is consumed: the stream stays in sync
  r = await c.chunk();
  t.is(r.error, ENOSPC);
  c.request(0, 2 ** 63, 4096, 3n);
  t.is((await c.chunk()).error, EINVAL, 'an offset past 2^53');
  c.request(7, 0, 0, 4n);
  t.is((await c.chunk()).error, EINVAL, 'BLOCK_STATUS of 0 bytes');
  c.request(0, 0, 4096, 5n, 0x8000);
  t.is((await c.chunk()).error, EINVAL, 'unknown flag');
  c.request(0, 0, 4096, 6n);
  r = await c.chunk();
  t.is(r.type, 1, 'OFFSET_DATA');
  t.true(r.payload.subarray(8).equals(Buffer.alloc(4096, 0x5a)), 'the connection went on');
  // an unknown command: error reply, then closed
  c.request(42, 0, 0, 7n);
  r = await c.chunk();
  t.is(r.error, EINVAL);
  t.regex(r.message!, /unknown or unsupported command 42/);
  await c.closed;

  const big = await RawNbd.connect(n.sock);
  await big.go('d.img');
  big.request(1, 0, 64 * MiB, 8n); // a 64 MiB write: refused before its payload is read
  r = await big.chunk();
  t.is(r.error, EINVAL);
  t.regex(r.message!, /more than the 33554432 accepted/);
  await big.closed;

  const bigRead = await RawNbd.connect(n.sock);
  await bigRead.go('d.img');
  bigRead.request(0, 0, 33 * MiB, 9n);
  t.is((await bigRead.chunk()).error, EINVAL);
  await bigRead.closed;

  const magic = await RawNbd.connect(n.sock);
  await magic.go('d.img');
  magic.write(Buffer.alloc(28, 0xee));
  await magic.closed;
  t.regex(n.m.log, /NBD protocol error, closing the connection: bad request magic/);

  const trunc = await RawNbd.connect(n.sock);
  await trunc.go('d.img');
  trunc.write(Buffer.alloc(10, 0x25));
  trunc.socket.end();
  await trunc.closed;
  await othersGoOn(t, n);
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

test('a client that never reads: the daemon stops reading from it, its memory stays bounded, others go on', async (t) => {
  const n = await setup(t);
  const before = rssBytes(n.m.pid);
  const c = await RawNbd.connect(n.sock);
  await c.go('d.img');
  c.socket.pause(); // never read a reply
  // 4096 reads of 1 MiB: 4 GiB of replies if the server answered them all into memory
  const req = Buffer.alloc(28);
  let sent = 0;
  for (let i = 0; i < 4096; i++) {
    req.writeUInt32BE(0x25609513, 0);
    req.writeUInt16BE(0, 6);
    req.writeBigUInt64BE(BigInt(i), 8);
    req.writeBigUInt64BE(BigInt((i % 16) * MiB), 16);
    req.writeUInt32BE(MiB, 24);
    c.socket.write(Buffer.from(req)); // all of them, whether the socket is full or not (a few hundred KiB here)
    sent++;
  }
  // give the daemon the time to answer all it will answer: other clients work meanwhile
  for (let i = 0; i < 5; i++) await othersGoOn(t, n);
  const grown = rssBytes(n.m.pid) - before;
  t.log(`${sent} requests sent; the daemon's RSS grew by ${(grown / MiB).toFixed(0)} MiB`);
  t.true(grown < 512 * MiB, `RSS grew by ${grown} bytes`);
  c.destroy();
  await othersGoOn(t, n);
});
