/**
 * The uploader puts the SCOs of one TLog several at a time (volume/datapath/upload/uploader.ts, SCO_PUTS) and the
 * TLog object only once every SCO it names is in the backend: a TLog in the backend still means all its
 * SCOs are, whatever order their puts took or failed in. Checked on a file:// backend behind a store that
 * records when each put starts and ends, holds puts at a gate, and fails chosen puts.
 */
import test from 'ava';
import type { BlobStore } from '../volume/backend/types.js';
import { openBlobStore } from '../volume/backend/index.js';
import { decodeRecords, RecordType } from '../volume/datapath/formats/tlog-format.js';
import { SCO_PUTS } from '../volume/datapath/upload/uploader.js';
import { MAX_OUT } from '../volume/datapath/upload/upload-buffers.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { BackendError } from '../util/errors.js';
import { gatedStore, GatedStore } from './helpers/gated-store.js';
import { until } from './helpers/until.js';
import { CS, pattern, poolEnv } from './helpers/vpool.js';

const SCO = 8; // clusters a SCO
const TLOG = 6; // SCOs a TLog

/** Records every put's start and end (in one sequence) and fails the first `failures` puts of chosen keys. */
class Recorder implements BlobStore {
  readonly events: Array<{ key: string; what: 'start' | 'end' }> = [];
  /** Puts in flight right now, and the most seen at once. */
  inflight = 0;
  maxInflight = 0;
  private readonly failuresLeft = new Map<string, number>();

  constructor(private readonly inner: BlobStore) {}

  get url(): string {
    return this.inner.url;
  }

  failFirst(key: string, n: number): void {
    this.failuresLeft.set(key, n);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.events.push({ key, what: 'start' });
    this.maxInflight = Math.max(this.maxInflight, ++this.inflight);
    try {
      const left = this.failuresLeft.get(key) ?? 0;
      if (left > 0) {
        this.failuresLeft.set(key, left - 1);
        throw new BackendError('BACKEND', `put ${key}: failed on purpose (test)`, { key });
      }
      await this.inner.put(key, data);
      this.events.push({ key, what: 'end' });
    } finally {
      this.inflight--;
    }
  }

  get(key: string): Promise<Buffer> { return this.inner.get(key); }
  getRange(key: string, offset: number, length: number): Promise<Buffer> { return this.inner.getRange(key, offset, length); }
  head(key: string): Promise<{ size: number } | null> { return this.inner.head(key); }
  list(prefix: string): Promise<string[]> { return this.inner.list(prefix); }
  delete(key: string): Promise<void> { return this.inner.delete(key); }
  close(): Promise<void> { return this.inner.close(); }
}

/**
 * Every TLog put started only after every SCO it names had a put that ended; returns what was wrong.
 * (The TLog objects are read back from the backend for the SCOs they name.)
 */
async function tlogsAfterTheirScos(rec: Recorder, backend: BlobStore, id: string): Promise<string[]> {
  const wrong: string[] = [];
  let tlogs = 0;
  for (let i = 0; i < rec.events.length; i++) {
    const e = rec.events[i];
    const m = /^vdisks\/([^/]+)\/tlog\/([0-9a-f]{8})$/.exec(e.key);
    if (m === null || m[1] !== id || e.what !== 'start') continue;
    tlogs++;
    const scos = decodeRecords(await backend.get(e.key)).records.flatMap((r) => (r.type === RecordType.Sco ? [r.sco] : []));
    const done = new Set(rec.events.slice(0, i).filter((x) => x.what === 'end').map((x) => x.key));
    for (const sco of scos) {
      const key = `vdisks/${id}/sco/${sco.toString(16).padStart(8, '0')}`;
      if (!done.has(key)) wrong.push(`TLog ${m[2]} put before ${key} was in`);
    }
  }
  if (tlogs === 0) wrong.push('no TLog was put');
  return wrong;
}

async function setup(t: import('ava').ExecutionContext): Promise<{ rec: Recorder; gated: GatedStore; backend: BlobStore; pool: Awaited<ReturnType<ReturnType<typeof poolEnv>['open']>> }> {
  const env = poolEnv(t, { scoClusters: SCO, tlogScos: TLOG });
  const backend = await openBlobStore(env.backendUrl);
  const rec = new Recorder(backend);
  const gated = gatedStore(t, rec);
  const pool = await env.open({ backend: gated });
  return { rec, gated, backend, pool };
}

test('the SCOs of a TLog are put several at a time; the TLog only once every one of them is in', async (t) => {
  const { rec, gated, backend, pool } = await setup(t);
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  const id = v.info().id;
  gated.pause();
  const data = pattern(3, 2 * TLOG * SCO * CS); // two TLogs of full SCOs
  await v.write(0, data);
  // the first TLog closed as its last SCO filled: its SCOs' puts wait at the gate, side by side
  await until(`${SCO_PUTS} SCO puts waiting at once (waiting: ${gated.waiting})`, () => gated.waiting >= SCO_PUTS);
  t.false(rec.events.some((e) => e.key.startsWith(`vdisks/${id}/`)), 'no object of the vDisk reached the backend while the gate was closed');
  gated.resume();
  await v.syncToBackend();
  t.true(rec.maxInflight > 1, `puts overlapped (at most ${rec.maxInflight} at once)`);
  t.deepEqual(await tlogsAfterTheirScos(rec, backend, id), []);
  t.true((await v.read(0, data.length)).equals(data));
});

test('a SCO put that fails holds its TLog back until it is in; the others are not put again', async (t) => {
  const { rec, backend, pool } = await setup(t);
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  const id = v.info().id;
  // SCO 2 of the first TLog fails its first three puts (the uploader's retries take it in the end)
  rec.failFirst(`vdisks/${id}/sco/00000002`, 3);
  const data = pattern(4, TLOG * SCO * CS + 5 * CS);
  await v.write(0, data);
  await v.syncToBackend();
  t.deepEqual(await tlogsAfterTheirScos(rec, backend, id), []);
  const starts = (key: string): number => rec.events.filter((e) => e.key === key && e.what === 'start').length;
  t.is(starts(`vdisks/${id}/sco/00000002`), 4, 'the failing SCO: three failures, then in');
  for (const sco of [1, 3, 4, 5, 6]) t.is(starts(`vdisks/${id}/sco/0000000${sco}`), 1, `SCO ${sco} put once`);
  t.true((await v.read(0, data.length)).equals(data));
});

test('a vPool whose puts never settle holds its own upload buffers only: another vPool in the process ships', async (t) => {
  // the bound on upload buffers was once per process: four in-process tests of one file, each with a paused
  // backend and a vPool dropped mid-put, held them all, and every other vPool's uploads waited for good
  t.timeout(120_000, 'the second vPool\'s uploads stopped behind the first one\'s held buffers');
  const a = await setup(t);
  a.gated.pause(); // never resumed before b has shipped: a's puts wait at the gate
  const disks: VDiskImpl[] = [];
  for (const name of ['/x', '/y', '/z']) {
    await a.pool.createFile(name, 0o644, 0, 0, 0);
    const v = a.pool.vdisk(name) as VDiskImpl;
    await v.write(0, pattern(5, 2 * TLOG * SCO * CS)); // two TLogs: each vDisk reads up to SCO_PUTS SCOs for its puts
    disks.push(v);
  }
  const buffers = disks[0].ctx.uploadBuffers;
  await until(`vPool a holds every upload buffer (held: ${buffers.held})`, () => buffers.held === MAX_OUT);

  const b = poolEnv(t, { scoClusters: SCO, tlogScos: TLOG });
  const bBackend = await openBlobStore(b.backendUrl);
  const bPool = await b.open({ backend: new Recorder(bBackend) }); // a put-by-put store: SCOs go through upload buffers
  await bPool.createFile('/d', 0o644, 0, 0, 0);
  const v = bPool.vdisk('/d');
  const data = pattern(6, 2 * TLOG * SCO * CS);
  await v.write(0, data);
  await v.syncToBackend();
  t.is(buffers.held, MAX_OUT, 'vPool a still holds its buffers');
  t.true((await v.read(0, data.length)).equals(data));
  t.true((await bBackend.list(`vdisks/${v.info().id}/tlog/`)).length >= 2, 'b\'s TLogs are in its backend');

  a.gated.resume();
  for (const d of disks) {
    await d.syncToBackend();
    t.true((await d.read(0, 2 * TLOG * SCO * CS)).equals(pattern(5, 2 * TLOG * SCO * CS)));
  }
});
