/**
 * Encryption at rest (volume/backend/encrypted-store.ts, crypto-format.ts, open-backend.ts): the BlobStore
 * conformance suite over EncryptedBlobStore on mem:// and file:// (default and tiny chunks, so ranges cross
 * chunks), then: stored objects hold no plaintext; a range reads only the chunks it covers; wrong key,
 * plain object, flipped byte, cut object and moved object are clear typed errors, never data; the marker
 * makes key mistakes fail at open; key files; and a whole vPool on an encrypted file:// backend: no stored
 * object holds the pattern written, everything reads back after a rebuild from the backend alone, and a
 * wrong or missing key refuses to open it.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BackendError } from '../util/errors.js';
import { openBlobStore, MemBlobStore } from '../volume/backend/index.js';
import { EncryptedBlobStore, EncryptionError, type EncryptionProblem } from '../volume/backend/encrypted-store.js';
import { HEADER_SIZE, TAG_SIZE } from '../volume/backend/crypto-format.js';
import { ENCRYPTION_MARKER, openBackend, readKeyFile } from '../volume/backend/open-backend.js';
import type { BlobStore } from '../volume/backend/types.js';
import { setLogLevel } from '../util/log.js';
import { blobStoreConformance } from './helpers/blobstore-conformance.js';
import { listFiles, pattern, poolEnv } from './helpers/vpool.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const KEY = Buffer.alloc(32, 7);
const OTHER = Buffer.alloc(32, 9);
let n = 0;
const mem = () => new MemBlobStore(`mem://enc-${process.pid}-${++n}`);

blobStoreConformance('encrypted mem', async () => new EncryptedBlobStore(mem(), KEY));
blobStoreConformance('encrypted mem, 100-byte chunks', async () => new EncryptedBlobStore(mem(), KEY, 100));
const dirs = new Map<BlobStore, string>();
blobStoreConformance('encrypted file', async () => {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'vpoolfs-enc-'));
  const s = new EncryptedBlobStore(await openBlobStore(`file://${dir}`), KEY);
  dirs.set(s, dir);
  return s;
}, async (s) => fs.rmSync(dirs.get(s)!, { recursive: true, force: true }));

/** Rejects with EncryptionError of `reason` and code CHECKSUM (per object). */
async function rejectsReason(t: ExecutionContext, p: Promise<unknown>, reason: EncryptionProblem, code: 'CHECKSUM' | 'INVALID' = 'CHECKSUM'): Promise<EncryptionError | undefined> {
  const err = await t.throwsAsync(p, { instanceOf: EncryptionError });
  t.is(err?.reason, reason, err?.message);
  t.is(err?.code, code, err?.message);
  return err;
}

/** True when any 64-byte window at a multiple of 997 of `plain` occurs in `stored`. */
function leaks(stored: Buffer, plain: Buffer): boolean {
  for (let i = 0; i + 64 <= plain.length; i += 997) if (stored.includes(plain.subarray(i, i + 64))) return true;
  return false;
}

test('stored objects hold no plaintext, differ for equal data, and are the plaintext plus header and tags', async (t) => {
  const inner = mem();
  const s = new EncryptedBlobStore(inner, KEY);
  const plain = pattern(1, 300_000);
  await s.put('a', plain);
  await s.put('b', plain);
  const [a, b] = [await inner.get('a'), await inner.get('b')];
  t.false(leaks(a, plain));
  t.false(a.equals(b), 'a fresh salt for every put');
  t.is(a.length, HEADER_SIZE + plain.length + Math.ceil(plain.length / (16 * 4128)) * TAG_SIZE);
  t.true(leaks(plain, plain), 'the search itself finds the pattern');
  t.true((await s.get('a')).equals(plain));
});

test('a range reads the header once, then only the chunks it covers', async (t) => {
  const inner = mem();
  const seen: number[] = [];
  const counting = Object.assign(Object.create(inner) as BlobStore, {
    getRange: (k: string, o: number, l: number) => (seen.push(l), inner.getRange(k, o, l)),
  });
  const chunk = 1000;
  const s = new EncryptedBlobStore(counting, KEY, chunk);
  const plain = randomBytes(50_000);
  await s.put('obj', plain);
  t.deepEqual(await s.getRange('obj', 12_345, 1500), plain.subarray(12_345, 13_845));
  t.deepEqual(seen, [HEADER_SIZE, 2 * (chunk + TAG_SIZE)]);
  seen.length = 0;
  t.deepEqual(await s.getRange('obj', 49_999, 1), plain.subarray(49_999));
  t.deepEqual(seen, [chunk + TAG_SIZE], 'the header is cached');
});

test('another writer overwriting an object: a cached header is refetched, the new data read', async (t) => {
  const inner = mem();
  const reader = new EncryptedBlobStore(inner, KEY);
  const writer = new EncryptedBlobStore(inner, KEY);
  await writer.put('o', Buffer.alloc(200_000, 1));
  t.deepEqual(await reader.getRange('o', 100, 10), Buffer.alloc(10, 1));
  await writer.put('o', Buffer.alloc(200_000, 2));
  t.deepEqual(await reader.getRange('o', 100, 10), Buffer.alloc(10, 2));
  await writer.put('o', Buffer.alloc(300_000, 3));
  t.deepEqual(await reader.getRange('o', 250_000, 10), Buffer.alloc(10, 3), 'past the cached length, within the new one');
  await writer.put('o', Buffer.alloc(1000, 4));
  t.deepEqual(await reader.getRange('o', 990, 10), Buffer.alloc(10, 4));
  await t.throwsAsync(reader.getRange('o', 995, 10), { instanceOf: BackendError, message: /past the end/ });
});

test('wrong key, plain object, flipped byte, cut object and moved object: typed errors, never data', async (t) => {
  const inner = mem();
  const s = new EncryptedBlobStore(inner, KEY);
  await s.put('x', randomBytes(200_000));
  const wrong = new EncryptedBlobStore(inner, OTHER);
  const err = await rejectsReason(t, wrong.get('x'), 'WRONG_KEY');
  t.regex(err?.message ?? '', /wrong encryption key/);
  t.is(err?.context.objectKeyId, s.keyId.toString('hex'));
  await rejectsReason(t, wrong.getRange('x', 5, 5), 'WRONG_KEY');
  await rejectsReason(t, wrong.head('x'), 'WRONG_KEY');

  await inner.put('plain', Buffer.from('not encrypted at all, but long enough to hold a header of 64 bytes ........'));
  await inner.put('tiny', Buffer.from('short'));
  for (const k of ['plain', 'tiny']) {
    await rejectsReason(t, s.get(k), 'NOT_ENCRYPTED');
    await rejectsReason(t, s.getRange(k, 0, 1), 'NOT_ENCRYPTED');
  }

  const stored = await inner.get('x');
  for (const pos of [2, 5, 12, 20, 40, 50, HEADER_SIZE + 10, stored.length - 1]) {
    const bad = Buffer.from(stored);
    bad[pos] ^= 0x01;
    await inner.put('flipped', bad);
    await rejectsReason(t, s.get('flipped'), pos < 4 ? 'NOT_ENCRYPTED' : pos >= 8 && pos < 16 ? 'WRONG_KEY' : 'DAMAGED');
  }
  await inner.put('cut', stored.subarray(0, stored.length - 100));
  await rejectsReason(t, s.get('cut'), 'DAMAGED');
  await rejectsReason(t, s.head('cut'), 'DAMAGED');
  await rejectsReason(t, s.getRange('cut', 199_990, 10), 'DAMAGED');
  await inner.put('moved', stored);
  await rejectsReason(t, s.get('moved'), 'DAMAGED');
  t.is((await s.get('x')).length, 200_000);
});

test('the marker: the first keyed open writes it; a wrong or missing key then fails at open with INVALID', async (t) => {
  const dir = fs.mkdtempSync(path.join('/tmp', 'vpoolfs-enc-marker-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const url = `file://${dir}`;
  const s = await openBackend(url, { encryptionKey: KEY });
  await s.put('k', Buffer.from('secret'));
  await s.close();
  const marker = JSON.parse(fs.readFileSync(path.join(dir, ENCRYPTION_MARKER), 'utf8')) as { keyId: string };
  t.regex(marker.keyId, /^[0-9a-f]{16}$/);
  const again = await openBackend(url, { encryptionKey: KEY });
  t.is((await again.get('k')).toString(), 'secret');
  await again.close();
  const wrong = await rejectsReason(t, openBackend(url, { encryptionKey: OTHER }), 'WRONG_KEY', 'INVALID');
  t.regex(wrong?.message ?? '', new RegExp(`key id ${marker.keyId}`));
  const missing = await rejectsReason(t, openBackend(url), 'MISSING_KEY', 'INVALID');
  t.regex(missing?.message ?? '', /--encryption-key-file/);
  const plainDir = fs.mkdtempSync(path.join('/tmp', 'vpoolfs-enc-plain-'));
  t.teardown(() => fs.rmSync(plainDir, { recursive: true, force: true }));
  await (await openBackend(`file://${plainDir}`)).close();
  t.deepEqual(fs.readdirSync(plainDir), [], 'no marker without a key');
});

test('key files: 32 raw bytes or 64 hex characters; anything else is BAD_KEY', async (t) => {
  const dir = fs.mkdtempSync(path.join('/tmp', 'vpoolfs-enc-key-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = (name: string, data: string | Buffer) => (fs.writeFileSync(path.join(dir, name), data), path.join(dir, name));
  t.deepEqual(await readKeyFile(f('raw', KEY)), KEY);
  t.deepEqual(await readKeyFile(f('hex', `${KEY.toString('hex').toUpperCase()}\n`)), KEY);
  for (const bad of [f('short', 'abc'), f('hex63', 'a'.repeat(63)), f('nothex', 'g'.repeat(64)), path.join(dir, 'missing')]) {
    await rejectsReason(t, readKeyFile(bad), 'BAD_KEY', 'INVALID');
  }
  t.throws(() => new EncryptedBlobStore(mem(), Buffer.alloc(16)), { instanceOf: BackendError });
});

test('a vPool on an encrypted file:// backend: no plaintext in any object, rebuilt from the backend alone, wrong key refused', async (t) => {
  const env = poolEnv(t);
  const data = pattern(42, 3 * 2 ** 20 + 12_345);
  const pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: KEY }) });
  await pool.mkdir('/dir', 0o755, 0, 0);
  await pool.createFile('/dir/disk', 0o644, 0, 0, 0);
  const v = pool.vdisk('/dir/disk');
  await v.write(4096, data);
  await v.write(0, Buffer.from('HELLO-PLAINTEXT-MARK'));
  await env.close(pool);

  const files = listFiles(env.backendDir);
  t.true(files.some((f) => f.includes('/sco/')) && files.some((f) => f.includes('/tlog/')), files.join(', '));
  for (const f of files) {
    const stored = fs.readFileSync(path.join(env.backendDir, f));
    t.false(leaks(stored, data), `${f} holds plaintext`);
    t.false(stored.includes('HELLO-PLAINTEXT-MARK'), `${f} holds plaintext`);
    // whole JSON members: a 4-byte word like 'disk' turns up in MiBs of ciphertext about once in 1,000 runs
    if (f !== ENCRYPTION_MARKER) t.false(stored.includes('"name":"dir"') || stored.includes('"name":"disk"'), `${f} shows the tree`);
  }

  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: KEY }) });
  const w = again.vdisk('/dir/disk');
  t.true((await w.read(4096, data.length)).equals(data));
  t.is((await w.read(0, 20)).toString(), 'HELLO-PLAINTEXT-MARK');
  await env.close(again);

  fs.rmSync(env.state, { recursive: true, force: true });
  await rejectsReason(t, openBackend(env.backendUrl, { encryptionKey: OTHER }), 'WRONG_KEY', 'INVALID');
  await rejectsReason(t, openBackend(env.backendUrl), 'MISSING_KEY', 'INVALID');
  // past the marker (someone opens the store by hand with another key): the vPool refuses, it never reads garbage
  const err = await t.throwsAsync(env.open({ backend: new EncryptedBlobStore(await openBlobStore(env.backendUrl), OTHER) }));
  t.true(err instanceof EncryptionError || (err?.cause instanceof EncryptionError), String(err));
});
