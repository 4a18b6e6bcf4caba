/**
 * Runs the BlobStore conformance suite (helpers/blobstore-conformance.ts) on file:// (a fresh temp dir
 * per store, removed afterwards) and mem:// (a fresh name per store), then tests what is specific to each:
 * file: no temp files left behind, directory cleanup, foreign files ignored, reopening, the a vs a/b
 * conflict, error mapping, and a crash test that SIGKILLs a child process (helpers/put-child.ts) in the
 * middle of puts and checks that nothing is torn; mem: shared contents per name; openBlobStore: schemes.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackendError } from '../util/errors.js';
import type { BlobStore } from '../volume/backend/types.js';
import { openBlobStore, resetMemStores } from '../volume/backend/index.js';
import { FileBlobStore, mapFsError, TEMP_PREFIX } from '../volume/backend/file-store.js';
import { blobStoreConformance, rejectsWith } from './helpers/blobstore-conformance.js';
import { readAckLog } from './helpers/ack-log.js';
import { CRASH_KEYS, crashKey, crashPayload, payloadHeader } from './helpers/put-child.js';

const dirs = new Map<BlobStore, string>();

async function makeFileStore(): Promise<BlobStore> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vpoolfs-blob-'));
  const store = await openBlobStore(pathToFileURL(dir).href);
  dirs.set(store, dir);
  return store;
}

async function removeFileStore(store: BlobStore): Promise<void> {
  const dir = dirs.get(store);
  dirs.delete(store);
  if (dir !== undefined) await fsp.rm(dir, { recursive: true, force: true });
}

let memCounter = 0;
blobStoreConformance('file', makeFileStore, removeFileStore);
blobStoreConformance('mem', async () => openBlobStore(`mem://conformance-${process.pid}-${++memCounter}`));

/** A fresh file store for one test, removed when the test ends. */
async function fileStore(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ store: BlobStore; dir: string }> {
  const store = await makeFileStore();
  t.teardown(async () => {
    await store.close();
    await removeFileStore(store);
  });
  return { store, dir: dirs.get(store)! };
}

/** Every file (not directory) under `dir`, as `/`-separated relative paths. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

test('file: puts, overwrites and a failed put leave no temp files behind', async (t) => {
  const { store, dir } = await fileStore(t);
  for (let i = 0; i < 20; i++) await store.put(`t/${i % 4}/obj${i % 7}`, Buffer.alloc(1000 * i, i));
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`t/same`, Buffer.alloc(i * 100, i))));
  await store.put('leaf', Buffer.from('x'));
  await rejectsWith(t, store.put('leaf/below', Buffer.from('y')), 'BACKEND', 'leaf/below');
  const files = (await filesUnder(dir)).sort();
  t.false(files.some((f) => f.includes(TEMP_PREFIX) || f.includes('.tmp')), files.join(', '));
  t.deepEqual(files, await store.list(''));
});

test('file: putFile stores a local file\'s bytes, replacing, atomically; a missing source fails and leaves nothing', async (t) => {
  const { store, dir } = await fileStore(t);
  const src = path.join(os.tmpdir(), `vpoolfs-putfile-${process.pid}-${Math.random().toString(36).slice(2)}`);
  t.teardown(() => fs.rmSync(src, { force: true }));
  for (const size of [0, 4096 + 5, 4 * 1024 * 1024 + 32 * 1024]) {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + size) & 0xff;
    fs.writeFileSync(src, data);
    t.is(await store.putFile!('p/sco/00000001', src), size);
    t.true((await store.get('p/sco/00000001')).equals(data), `${size} bytes read back`);
  }
  await rejectsWith(t, store.putFile!('p/sco/00000002', `${src}.missing`), 'BACKEND', 'p/sco/00000002');
  t.is(await store.head('p/sco/00000002'), null);
  const files = (await filesUnder(dir)).sort();
  t.deepEqual(files, ['p/sco/00000001'], 'no temp file left behind');
});

test('file: delete removes emptied parent directories but never the root', async (t) => {
  const { store, dir } = await fileStore(t);
  await store.put('x/y/z/k', Buffer.from('1'));
  await store.delete('x/y/z/k');
  t.deepEqual(await fsp.readdir(dir), []);
  await store.put('x/a', Buffer.from('1'));
  await store.put('x/y/b', Buffer.from('2'));
  await store.delete('x/y/b');
  t.deepEqual(await fsp.readdir(dir, { recursive: true }), ['x', path.join('x', 'a')]);
  await store.delete('x/a');
  t.deepEqual(await fsp.readdir(dir), []);
  t.true((await fsp.stat(dir)).isDirectory());
});

test('file: list ignores stale temp files and names that cannot be keys', async (t) => {
  const { store, dir } = await fileStore(t);
  await store.put('d/real', Buffer.from('1'));
  await fsp.writeFile(path.join(dir, 'd', `${TEMP_PREFIX}999-1-stale`), 'half a put');
  await fsp.writeFile(path.join(dir, 'd', 'has space'), 'foreign');
  await fsp.mkdir(path.join(dir, 'd', 'bad~dir'));
  await fsp.writeFile(path.join(dir, 'd', 'bad~dir', 'inner'), 'foreign');
  t.deepEqual(await store.list(''), ['d/real']);
  t.deepEqual(await store.list('d/'), ['d/real']);
  await rejectsWith(t, store.head(`d/${TEMP_PREFIX}999-1-stale`), 'INVALID');
});

test('file: objects survive closing and reopening the store', async (t) => {
  const { store, dir } = await fileStore(t);
  await store.put('keep/me', Buffer.from('persistent'));
  await store.close();
  const again = await FileBlobStore.open(pathToFileURL(dir).href);
  t.is((await again.get('keep/me')).toString(), 'persistent');
  t.is(again.url, pathToFileURL(dir).href);
  await again.close();
});

test('file: a root that went away or became a file is a BACKEND error, never an empty backend', async (t) => {
  for (const how of ['deleted', 'a file'] as const) {
    const store = await makeFileStore();
    const dir = dirs.get(store)!;
    await store.put('vdisks/a/tlog/0001', Buffer.from('x'));
    t.deepEqual(await store.list('vdisks/'), ['vdisks/a/tlog/0001']);
    t.is(await store.head('vdisks/b/doc'), null, 'a missing key under a sound root is missing');
    await fsp.rename(dir, `${dir}.away`);
    if (how === 'a file') await fsp.writeFile(dir, 'not a directory');
    await rejectsWith(t, store.list('vdisks/'), 'BACKEND');
    await rejectsWith(t, store.list(''), 'BACKEND');
    await rejectsWith(t, store.head('vdisks/a/tlog/0001'), 'BACKEND');
    await rejectsWith(t, store.get('vdisks/a/tlog/0001'), 'BACKEND');
    await fsp.rm(dir, { force: true, recursive: true });
    await fsp.rename(`${dir}.away`, dir);
    t.deepEqual(await store.list('vdisks/'), ['vdisks/a/tlog/0001'], `back after the root was ${how}`);
    await store.close();
    await removeFileStore(store);
  }
});

test('file: a key and a key below it cannot both exist (BACKEND), and nothing is damaged', async (t) => {
  const { store } = await fileStore(t);
  await store.put('a', Buffer.from('file a'));
  await rejectsWith(t, store.put('a/b', Buffer.from('x')), 'BACKEND', 'a/b');
  t.is((await store.get('a')).toString(), 'file a');
  await store.put('c/d', Buffer.from('file c/d'));
  await rejectsWith(t, store.put('c', Buffer.from('x')), 'BACKEND', 'c');
  t.is(await store.head('c'), null);
  t.deepEqual(await store.list(''), ['a', 'c/d']);
});

test('file: fs errors map to NO_SPACE or BACKEND with the key and the cause', async (t) => {
  const enospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  const nospace = mapFsError(enospc, 'put', 'k/1', 'file:///x');
  t.is(nospace.code, 'NO_SPACE');
  t.is(nospace.context.key, 'k/1');
  t.is(nospace.cause, enospc);
  const { store } = await fileStore(t);
  const longSegment = 'n'.repeat(300); // a valid key, but over NAME_MAX for the file system
  const err = await t.throwsAsync(store.put(longSegment, Buffer.from('x')), { instanceOf: BackendError });
  t.is(err?.code, 'BACKEND');
  t.is(err?.context.key, longSegment);
  t.is((err?.cause as NodeJS.ErrnoException | undefined)?.code, 'ENAMETOOLONG');
});

test('file: opening a file URL that names a host or a regular file fails', async (t) => {
  await rejectsWith(t, openBlobStore('file://somehost/tmp/x'), 'INVALID');
  const { dir } = await fileStore(t);
  await fsp.writeFile(path.join(dir, 'plain'), 'x');
  // a file where the root directory should be is a mistake in the URL: INVALID, and the message says what
  await rejectsWith(t, openBlobStore(pathToFileURL(path.join(dir, 'plain')).href), 'INVALID');
  await t.throwsAsync(openBlobStore(pathToFileURL(path.join(dir, 'plain')).href), { message: /plain is a file, not a directory$/ });
  // below a file: the lookup fails, naming the path and the cause
  await rejectsWith(t, openBlobStore(pathToFileURL(path.join(dir, 'plain', 'sub')).href), 'BACKEND');
});

test('file: a root that cannot be created (procfs takes no new directories) fails at once, naming it and why', async (t) => {
  await rejectsWith(t, openBlobStore('file:///proc/vpoolfs-conformance/x'), 'BACKEND');
  await t.throwsAsync(openBlobStore('file:///proc/vpoolfs-conformance/x'), { message: /cannot create the directory \/proc\/vpoolfs-conformance \(ENOENT/ });
});

test('file: puts killed by SIGKILL at random moments are never torn', async (t) => {
  const { store, dir } = await fileStore(t);
  await store.close();
  const url = pathToFileURL(dir).href;
  const child = new URL('./helpers/put-child.js', import.meta.url);
  const lastAck = new Map<number, number>();
  const ackDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-acks-'));
  t.teardown(() => fs.rmSync(ackDir, { recursive: true, force: true }));
  const rounds = 6;
  for (let round = 0; round < rounds; round++) {
    const ackFile = path.join(ackDir, `acks-${round}`);
    const proc = spawn(process.execPath, [fileURLToPath(child), url, String(round * 1_000_000 + 1), ackFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('acked\n')) timer ??= setTimeout(() => proc.kill('SIGKILL'), 20 + Math.random() * 300);
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.on('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    // the acks from the ack log, now that the child is dead (stdout could have lost some: ack-log.ts)
    let acks = 0;
    for (const line of readAckLog(ackFile)) {
      const m = /^ack (\d+) (\d+)$/.exec(line);
      if (m === null) continue;
      acks++;
      const [i, v] = [Number(m[1]), Number(m[2])];
      lastAck.set(i, Math.max(v, lastAck.get(i) ?? 0));
    }
    t.is(signal, 'SIGKILL', `round ${round}: child exited with ${code}: ${stderr}`);
    t.true(acks > 0, `round ${round}: no acknowledged put`);

    const check = await openBlobStore(url);
    for (let i = 0; i < CRASH_KEYS; i++) {
      const acked = lastAck.get(i);
      if (acked === undefined && (await check.head(crashKey(i))) === null) continue;
      const data = await check.get(crashKey(i));
      const header = payloadHeader(data);
      t.truthy(header, `round ${round}: ${crashKey(i)} has no valid header`);
      if (header === null) continue;
      t.is(header.index, i);
      t.true(header.version >= (acked ?? 0), `round ${round}: ${crashKey(i)} went back from ${acked} to ${header.version}`);
      t.true(data.equals(crashPayload(i, header.version)), `round ${round}: ${crashKey(i)} version ${header.version} is torn`);
    }
    const listed = await check.list('');
    t.true(listed.every((k) => /^crash\/(even|odd)\/obj\d+$/.test(k)), listed.join(', '));
    await check.close();
    const temps = (await filesUnder(dir)).filter((f) => path.basename(f).startsWith(TEMP_PREFIX));
    t.log(`round ${round}: ${acks} acknowledged puts, ${temps.length} temp files left by the crash (ignored by list)`);
  }
  t.is(lastAck.size, CRASH_KEYS);
});

test('mem: stores with the same name share contents, other names do not', async (t) => {
  const name = `mem://shared-${process.pid}`;
  const a = await openBlobStore(name);
  await a.put('k', Buffer.from('v1'));
  await a.close();
  const b = await openBlobStore(name);
  t.is((await b.get('k')).toString(), 'v1');
  const other = await openBlobStore(`${name}-other`);
  t.deepEqual(await other.list(''), []);
  await Promise.all([b.close(), other.close()]);
});

test.serial('mem: resetMemStores forgets every mem backend', async (t) => {
  const a = await openBlobStore('mem://reset-me');
  await a.put('k', Buffer.from('v'));
  resetMemStores();
  const b = await openBlobStore('mem://reset-me');
  t.is(await b.head('k'), null);
  await Promise.all([a.close(), b.close()]);
});

test('openBlobStore rejects unknown schemes, listing the supported ones', async (t) => {
  for (const url of ['nope', '', 'http://x/', 'gs://key:secret@bucket/prefix']) {
    const err = await t.throwsAsync(openBlobStore(url), { instanceOf: BackendError });
    t.is(err?.code, 'INVALID');
    t.regex(err?.message ?? '', /file:.*mem:/);
    t.notRegex(err?.message ?? '', /secret/);
  }
  await rejectsWith(t, openBlobStore('mem://'), 'INVALID');
  const s3 = await t.throwsAsync(openBlobStore('s3://key:secret@bucket/prefix'), { instanceOf: BackendError });
  t.is(s3?.code, 'INVALID');
  t.notRegex(s3?.message ?? '', /secret/);
});
