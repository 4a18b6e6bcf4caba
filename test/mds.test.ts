/**
 * MetadataStore conformance: one suite (`conformance`) run against both the lmdb and the memory store,
 * plus lmdb-only tests: reopen, directory handling, error mapping, and a crash test in which a child
 * process (helpers/mds-child.ts) is SIGKILLed at random moments while committing numbered batches.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LmdbMetadataStore, MemoryMetadataStore, openMetadataStore } from '../mds/index.js';
import { toMetadataError } from '../mds/lmdb-store.js';
import type { MetadataStore } from '../mds/types.js';
import { type ErrorCode, MetadataError } from '../util/errors.js';
import { readAckLog } from './helpers/ack-log.js';
import { batchKey, LOG_KEEP, logKey } from './helpers/mds-child.js';

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-mds-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a fresh store; closed in teardown (which runs before the temp dir is removed). */
type Opener = (t: ExecutionContext) => MetadataStore;
const openLmdb: Opener = (t) => {
  const store = LmdbMetadataStore.open(tempDir(t));
  t.teardown(() => store.close());
  return store;
};
const openMemory: Opener = () => new MemoryMetadataStore();

const buf = (s: string) => Buffer.from(s);
const keysOf = (store: MetadataStore, prefix: string) => [...store.range(prefix)].map(([k]) => k);
const byteSorted = (keys: string[]) => [...keys].sort((a, b) => Buffer.compare(buf(a), buf(b)));
const code = (c: ErrorCode) => ({ instanceOf: MetadataError, code: c });
const shuffled = <T>(xs: T[]): T[] => {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};
const putAll = (store: MetadataStore, keys: string[]) => store.commit(keys.map((key) => ({ key, value: buf(`v:${key}`) })));

function conformance(name: string, openStore: Opener): void {
  test(`${name}: get of a missing key is undefined`, (t) => {
    t.is(openStore(t).get('nothing/here'), undefined);
  });

  test(`${name}: commit applies puts and deletes as one batch`, async (t) => {
    const store = openStore(t);
    await store.commit([{ key: 'a', value: buf('1') }, { key: 'b', value: buf('2') }, { key: 'c', value: buf('3') }]);
    await store.commit([
      { key: 'a', value: null },
      { key: 'b', value: buf('20') },
      { key: 'd', value: buf('4') },
      { key: 'd', value: buf('5') }, // the last op on a key wins
      { key: 'never-there', value: null },
    ]);
    await store.commit([]);
    t.is(store.get('a'), undefined);
    t.deepEqual(store.get('b'), buf('20'));
    t.deepEqual(store.get('c'), buf('3'));
    t.deepEqual(store.get('d'), buf('5'));
    t.deepEqual(keysOf(store, ''), ['b', 'c', 'd']);
  });

  test(`${name}: values are copied in and out`, async (t) => {
    const store = openStore(t);
    const passed = buf('orig');
    const pending = store.commit([{ key: 'k', value: passed }]);
    passed.fill(0x78); // the caller reuses its buffer before the commit lands
    await pending;
    store.get('k')!.fill(0);
    for (const [, value] of store.range('k')) value.fill(0);
    t.deepEqual(store.get('k'), buf('orig'));
    await store.commit([{ key: 'u8', value: new Uint8Array([1, 2, 3]) }, { key: 'empty', value: new Uint8Array(0) }]);
    t.deepEqual(store.get('u8'), Buffer.from([1, 2, 3]));
    t.true(Buffer.isBuffer(store.get('u8')));
    t.deepEqual(store.get('empty'), Buffer.alloc(0));
  });

  test(`${name}: range is ascending UTF-8 byte order within the prefix`, async (t) => {
    const store = openStore(t);
    const underAb = ['a/b', 'a/b\u0000z', 'a/b/c', 'a/bc', 'a/b\u007f', 'a/b\u0080', 'a/b\u00e9', 'a/b\uffff', 'a/b\u{1F600}'];
    const all = [...underAb, 'a', 'a/', 'a/a', 'a/c', 'a0', 'b', '\u0001x', '\u00e9'];
    await putAll(store, shuffled(all));
    t.deepEqual(keysOf(store, 'a/b'), underAb); // the expected order, written out: bytes, not UTF-16 units
    t.deepEqual(keysOf(store, ''), byteSorted(all));
    t.deepEqual(keysOf(store, 'a/b/'), ['a/b/c']);
    t.deepEqual(keysOf(store, 'a/bc'), ['a/bc']);
    t.deepEqual(keysOf(store, 'a/b\u00e9'), ['a/b\u00e9']);
    t.deepEqual(keysOf(store, 'a/'), byteSorted(all.filter((k) => k.startsWith('a/'))));
    t.deepEqual(keysOf(store, 'zzz'), []);
    t.deepEqual(keysOf(store, 'x'.repeat(3000)), []);
    for (const [key, value] of store.range('a/b')) t.deepEqual(value, buf(`v:${key}`));
    for (const [key] of store.range('')) {
      t.is(key, '\u0001x');
      break; // an abandoned iteration must release its snapshot
    }
    await store.commit([{ key: 'a/b', value: null }]);
    t.is(keysOf(store, 'a/b')[0], 'a/b\u0000z');
  });

  test(`${name}: range over 20k keys`, async (t) => {
    const store = openStore(t);
    const n = 20_000;
    const keys = shuffled(Array.from({ length: n }, (_, i) => `n/${String(i).padStart(6, '0')}`));
    for (let i = 0; i < n; i += 5000) {
      await store.commit(keys.slice(i, i + 5000).map((key) => ({ key, value: buf(key.slice(2)) })));
    }
    await putAll(store, ['n', 'n.', 'n0', 'm/z']);
    const got = [...store.range('n/')];
    t.is(got.length, n);
    let ok = true;
    got.forEach(([key, value], i) => {
      ok &&= key === `n/${String(i).padStart(6, '0')}` && value.toString() === key.slice(2);
    });
    t.true(ok);
  });

  test(`${name}: range walks a snapshot while commits land`, async (t) => {
    const store = openStore(t);
    await putAll(store, ['s/1', 's/2', 's/3', 's/4']);
    const seen: string[] = [];
    for (const [key, value] of store.range('s/')) {
      seen.push(key);
      t.deepEqual(value, buf(`v:${key}`));
      if (seen.length === 1) {
        await store.commit([{ key: 's/3', value: null }, { key: 's/25', value: buf('new') }, { key: 's/4', value: buf('x') }]);
      }
    }
    t.deepEqual(seen, ['s/1', 's/2', 's/3', 's/4']);
    t.deepEqual(keysOf(store, 's/'), ['s/1', 's/2', 's/25', 's/4']);
  });

  test(`${name}: deletePrefix removes exactly the keys under the prefix`, async (t) => {
    const store = openStore(t);
    await putAll(store, ['a', 'a/b', 'a/b/c', 'a/bc', 'a/b\u00e9', 'a/c', 'b']);
    await store.deletePrefix('a/b');
    t.deepEqual(keysOf(store, ''), ['a', 'a/c', 'b']);
    await store.deletePrefix('zzz');
    await store.deletePrefix('');
    t.deepEqual(keysOf(store, ''), []);
  });

  test(`${name}: writes apply in call order and are invisible until they land`, async (t) => {
    const store = openStore(t);
    const first = putAll(store, ['q/1', 'q/2']);
    t.is(store.get('q/1'), undefined);
    const wipe = store.deletePrefix('q/');
    const last = putAll(store, ['q/3']);
    await Promise.all([first, wipe, last]);
    t.deepEqual(keysOf(store, 'q/'), ['q/3']);
  });

  test(`${name}: bad input is INVALID and the batch is not applied`, async (t) => {
    const store = openStore(t);
    const bad = async (key: string, value: unknown = buf('v')) => {
      const err = await t.throwsAsync(store.commit([{ key: 'good', value: buf('g') }, { key, value: value as Uint8Array }]), code('INVALID'));
      return err;
    };
    await bad('');
    const long = await bad('x'.repeat(1979));
    t.true(String((long as { context?: { key?: string } }).context?.key).startsWith('xxx'));
    await bad('\u00e9'.repeat(990)); // 1980 bytes
    await bad('a\uD800z');
    await bad('k', 'not bytes');
    t.is(store.get('good'), undefined);
    await store.commit([{ key: '\u00e9'.repeat(989), value: buf('max') }]); // exactly 1978 bytes
    t.deepEqual(store.get('\u00e9'.repeat(989)), buf('max'));
    t.throws(() => store.get(''), code('INVALID'));
    t.throws(() => store.get('y'.repeat(1979)), code('INVALID'));
  });

  test(`${name}: close waits for in-flight writes, then every call is CLOSED`, async (t) => {
    const store = openStore(t);
    await putAll(store, ['c/1', 'c/2']);
    const it = store.range('c/')[Symbol.iterator]();
    t.is(it.next().value?.[0], 'c/1');
    const pending = putAll(store, ['c/3']);
    await store.close();
    await t.notThrowsAsync(pending);
    t.throws(() => it.next(), code('CLOSED'));
    t.throws(() => store.get('c/1'), code('CLOSED'));
    t.throws(() => store.range('c/'), code('CLOSED'));
    await t.throwsAsync(putAll(store, ['c/4']), code('CLOSED'));
    await t.throwsAsync(store.deletePrefix('c/'), code('CLOSED'));
    await t.notThrowsAsync(store.close());
  });
}

conformance('lmdb', openLmdb);
conformance('memory', openMemory);

test('lmdb: a reopened store sees everything committed', async (t) => {
  const dir = tempDir(t);
  const store = LmdbMetadataStore.open(dir);
  await putAll(store, ['r/1', 'r/2', 'r/3', 'x/1', 'x/2']);
  await store.commit([{ key: 'r/2', value: null }, { key: 'r/1', value: buf('changed') }]);
  await store.deletePrefix('x/');
  const unawaited = putAll(store, ['r/4']); // close waits for it
  await store.close();
  await unawaited;
  const again = LmdbMetadataStore.open(dir);
  t.teardown(() => again.close());
  t.deepEqual(keysOf(again, ''), ['r/1', 'r/3', 'r/4']);
  t.deepEqual(again.get('r/1'), buf('changed'));
});

test('lmdb: creates a missing directory, even one with a dot in its name', async (t) => {
  const dir = path.join(tempDir(t), 'deep', 'meta.db');
  const store = LmdbMetadataStore.open(dir);
  await putAll(store, ['k']);
  await store.close();
  t.true(fs.statSync(dir).isDirectory());
  t.true(fs.existsSync(path.join(dir, 'data.mdb')));
});

test('lmdb: failures map to NO_SPACE, INVALID or BACKEND with context', (t) => {
  const full = toMetadataError(Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: -30792 }), 'commit', { key: 'k' });
  t.is(full.code, 'NO_SPACE');
  t.is(full.context.key, 'k');
  t.regex(full.message, /out of space/);
  t.is(toMetadataError(Object.assign(new Error('No space left on device'), { code: 28 }), 'commit', {}).code, 'NO_SPACE');
  t.is(toMetadataError(new Error('Key size is larger than the maximum key size (1978)'), 'get', {}).code, 'INVALID');
  t.is(toMetadataError(new Error('MDB_CORRUPTED: Located page was wrong type'), 'get', {}).code, 'BACKEND');
});

test('openMetadataStore picks the implementation', async (t) => {
  const memory = openMetadataStore('memory');
  t.true(memory instanceof MemoryMetadataStore);
  const lmdb = openMetadataStore('lmdb', tempDir(t));
  t.true(lmdb instanceof LmdbMetadataStore);
  await Promise.all([memory.close(), lmdb.close()]);
  t.throws(() => openMetadataStore('lmdb'), code('INVALID'));
});

const CHILD = fileURLToPath(new URL('./helpers/mds-child.js', import.meta.url));
const KEYS_PER_BATCH = 8;

interface ChildRun {
  ready: number | undefined;
  acks: number[];
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs the child until SIGKILL after `delayMs`; its acks come from the ack log, read once it is dead. */
function runChild(dir: string, acksFile: string, delayMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(KEYS_PER_BATCH), acksFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      const lines = out.split('\n').slice(0, -1);
      const ready = lines.find((l) => l.startsWith('ready '));
      const acks = readAckLog(acksFile).filter((l) => l.startsWith('ack ')).map((l) => Number(l.slice(4)));
      resolve({ ready: ready === undefined ? undefined : Number(ready.slice(6)), acks, signal, stderr });
    });
  });
}

test('lmdb: SIGKILL at random moments never tears a batch nor loses an acknowledged one', async (t) => {
  const dir = tempDir(t);
  const acksDir = tempDir(t);
  let durable = 0; // the generation found in the store after the last kill
  let totalAcks = 0;
  for (let round = 0; round < 14; round++) {
    const delay = round % 5 === 0 ? 5 + Math.random() * 60 : 80 + Math.random() * 500;
    const run = await runChild(dir, path.join(acksDir, `acks-${round}`), delay);
    t.is(run.signal, 'SIGKILL', `round ${round}: child ended by itself: ${run.stderr}`);
    if (run.ready !== undefined) t.is(run.ready, durable, `round ${round}: child resumed from another generation`);
    const lastAck = Math.max(durable, ...run.acks);
    totalAcks += run.acks.length;

    const store = LmdbMetadataStore.open(dir);
    try {
      const values = Array.from({ length: KEYS_PER_BATCH }, (_, i) => store.get(batchKey(i)));
      if (values.every((v) => v === undefined) && lastAck === 0) continue; // killed before the first commit
      const gens = values.map((v) => v?.readUInt32BE(0));
      const gen = gens[0]!;
      t.deepEqual(gens, Array(KEYS_PER_BATCH).fill(gen), `round ${round}: batch torn`);
      for (const v of values) t.true(v!.subarray(4).every((b) => b === (gen & 0xff)), `round ${round}: value torn`);
      t.true(gen >= lastAck, `round ${round}: generation ${gen} < acknowledged ${lastAck}`);
      t.true(gen <= lastAck + 1, `round ${round}: generation ${gen} was never attempted`);
      const logs = Array.from({ length: Math.min(gen, LOG_KEEP) }, (_, i) => logKey(gen - Math.min(gen, LOG_KEEP) + 1 + i));
      t.deepEqual(keysOf(store, 'log/'), logs, `round ${round}: log keys of another generation`);
      durable = gen;
    } finally {
      await store.close();
    }
  }
  t.log(`${totalAcks} acknowledged commits over 14 kills; store at generation ${durable}`);
  t.true(totalAcks > 0);
});
