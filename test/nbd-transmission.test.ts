/**
 * The transmission phase (nbd/transmission.ts) in process, over a real unix socket but with an in-memory
 * export whose operations finish when the test says so — beside the real-client tests, for what timing
 * cannot show deterministically there: replies go out in the order requests finish (not the order they came),
 * no more than 64 requests are in flight per connection however many the client sends, and DISC lets the
 * requests in flight answer before the connection and the export are closed.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ByteQueue } from '../nbd/byte-queue.js';
import type { VDiskExport } from '../nbd/export.js';
import { Transmission } from '../nbd/transmission.js';
import { logger } from '../util/log.js';
import { RawNbd } from './helpers/nbd-raw.js';

/** An export whose reads wait in `pending` until the test resolves them. */
class GatedExport {
  readonly name = 'gated';
  readonly size = 2 ** 20;
  readonly readOnly = false;
  readonly canTrim = false;
  readonly multiConn = true;
  pending: { offset: number; out: Buffer; done: () => void }[] = [];
  started = 0;
  maxPending = 0;
  closed = false;
  read(out: Buffer, offset: number): Promise<void> {
    this.started++;
    return new Promise((resolve) => {
      this.pending.push({ offset, out, done: resolve });
      this.maxPending = Math.max(this.maxPending, this.pending.length);
    });
  }
  /** Finishes the pending read at `offset` with bytes of `fill`. */
  finish(offset: number, fill: number): void {
    const i = this.pending.findIndex((p) => p.offset === offset);
    const [p] = this.pending.splice(i, 1);
    p!.out.fill(fill);
    p!.done();
  }
  close(): void {
    this.closed = true;
  }
}

async function serve(t: import('ava').ExecutionContext): Promise<{ e: GatedExport; client: RawNbd }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vpoolfs-nbdtx-'));
  const sock = path.join(dir, 's');
  const e = new GatedExport();
  const server = net.createServer((s) => {
    new Transmission(s, new ByteQueue(), { export: e as unknown as VDiskExport, structured: true, baseAllocation: false, flags: 0 }, logger('nbd-test'));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const client = await RawNbd.connect(sock);
  t.teardown(async () => {
    client.destroy();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  return { e, client };
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

test('replies go out in the order the requests finish', async (t) => {
  const { e, client } = await serve(t);
  client.request(0, 0, 4, 1n);
  client.request(0, 4096, 4, 2n);
  client.request(0, 8192, 4, 3n);
  await until(() => e.pending.length === 3);
  e.finish(8192, 0xcc);
  e.finish(0, 0xaa);
  const a = await client.chunk();
  const b = await client.chunk();
  t.deepEqual([a.cookie, b.cookie], [3n, 1n]);
  t.true(a.payload.subarray(8).equals(Buffer.alloc(4, 0xcc)));
  t.true(b.payload.subarray(8).equals(Buffer.alloc(4, 0xaa)));
  e.finish(4096, 0xbb);
  t.is((await client.chunk()).cookie, 2n);
});

test('at most 64 requests in flight per connection, whatever the client sends', async (t) => {
  const { e, client } = await serve(t);
  for (let i = 0; i < 100; i++) client.request(0, i * 4096, 4, BigInt(i));
  await until(() => e.pending.length === 64);
  const got: bigint[] = [];
  while (got.length < 100) {
    await until(() => e.pending.length > 0);
    e.finish(e.pending[0]!.offset, 1);
    got.push((await client.chunk()).cookie);
  }
  t.is(e.started, 100);
  t.is(e.maxPending, 64);
  t.deepEqual(got.slice(0, 64), Array.from({ length: 64 }, (_, i) => BigInt(i)));
});

test('DISC: the requests in flight answer, then the connection and the export close', async (t) => {
  const { e, client } = await serve(t);
  client.request(0, 0, 4, 7n);
  await until(() => e.pending.length === 1);
  client.request(2, 0, 0, 8n); // NBD_CMD_DISC
  await new Promise((r) => setTimeout(r, 50)); // (the server has the DISC; nothing may close yet)
  t.false(client.ended);
  t.false(e.closed);
  e.finish(0, 9);
  t.is((await client.chunk()).cookie, 7n);
  await client.closed;
  t.true(e.closed);
});
