/**
 * The s3:// backend against a real Ceph radosgw started for this file (helpers/s3-server.ts): the whole
 * BlobStore conformance suite (each store in its own bucket without a prefix, so that 1024-byte keys fit
 * S3's limit; emptied afterwards), the same
 * suite with a small multipart threshold so that big objects go up in parts, and once more encrypted
 * (EncryptedBlobStore over S3: real ranged GETs of chunks); then what is specific to S3: URL parsing,
 * bucket creation, multipart sizes, the bounded keep-alive pool, errors while the server is down (an open
 * then goes on, the bucket is checked before the first put), and wrong credentials failing the open at once.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { BackendError } from '../util/errors.js';
import { openBlobStore } from '../volume/backend/index.js';
import type { BlobStore } from '../volume/backend/types.js';
import { parseS3Url } from '../volume/backend/s3-url.js';
import { EncryptedBlobStore } from '../volume/backend/encrypted-store.js';
import { sh } from './helpers/mount.js';
import { blobStoreConformance, rejectsWith } from './helpers/blobstore-conformance.js';
import { emptyStore, useS3Server } from './helpers/s3-server.js';

const s3 = useS3Server('store');
const urls = new Map<BlobStore, string>();
let counter = 0;

function maker(extra: Record<string, string> = {}): () => Promise<BlobStore> {
  return async () => {
    const url = s3.url(`conformance-${++counter}`, '', extra);
    const store = await openBlobStore(url);
    urls.set(store, url);
    return store;
  };
}

async function cleanup(store: BlobStore): Promise<void> {
  const url = urls.get(store);
  urls.delete(store);
  if (url !== undefined) await emptyStore(url);
}

blobStoreConformance('s3', maker(), cleanup);
blobStoreConformance('s3 multipart', maker({ multipartThreshold: String(5 * 2 ** 20), partSize: String(5 * 2 ** 20) }), cleanup);
const plainMaker = maker();
const inners = new Map<BlobStore, BlobStore>();
blobStoreConformance('s3 encrypted', async () => {
  const inner = await plainMaker();
  const s = new EncryptedBlobStore(inner, Buffer.alloc(32, 3));
  inners.set(s, inner);
  return s;
}, async (s) => cleanup(inners.get(s)!));

test.serial('s3: the keep-alive pool is bounded by maxSockets, and its connections are reused', async (t) => {
  const url = s3.url('pool', 'p', { maxSockets: '2' });
  const store = await openBlobStore(url);
  t.teardown(async () => {
    await store.close();
    await emptyStore(url);
  });
  const port = new URL(s3.endpoint).port;
  const clientSockets = async () => {
    const r = await sh(`ss -Htn state established '( dport = :${port} )' | awk '{print $3}' | sort`);
    return r.stdout.split('\n').filter((l) => l !== '');
  };
  const before = new Set(await clientSockets());
  const seen = new Set<string>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const now = (await clientSockets()).filter((s) => !before.has(s));
      t.true(now.length <= 2, `${now.length} connections open at once: ${now.join(' ')}`);
      for (const s of now) seen.add(s);
    }
  })();
  await Promise.all(Array.from({ length: 48 }, (_, i) => store.put(`k${i}`, randomBytes(64 * 1024))));
  await Promise.all(Array.from({ length: 48 }, (_, i) => store.get(`k${i}`)));
  sampling = false;
  await sampler;
  t.true(seen.size >= 1 && seen.size <= 2, `connections used: ${[...seen].join(' ')}`);
});

test('s3: objects of 1, 2 and 3 parts (and a short last part) round-trip and read in ranges across parts', async (t) => {
  const url = s3.url('multipart', 'm', { multipartThreshold: String(5 * 2 ** 20), partSize: String(5 * 2 ** 20) });
  const store = await openBlobStore(url);
  t.teardown(async () => {
    await store.close();
    await emptyStore(url);
  });
  for (const size of [5 * 2 ** 20, 10 * 2 ** 20, 12 * 2 ** 20 + 1234]) {
    const data = randomBytes(size);
    await store.put(`obj${size}`, data);
    t.deepEqual(await store.head(`obj${size}`), { size });
    t.true((await store.get(`obj${size}`)).equals(data), `size ${size}`);
    const at = Math.min(5 * 2 ** 20 - 100, size - 200);
    t.deepEqual(await store.getRange(`obj${size}`, at, 200), data.subarray(at, at + 200));
  }
});

test('s3: the bucket is created when missing, and a prefix keeps stores apart', async (t) => {
  const bucket = `fresh-${process.pid}-${Date.now().toString(36)}`;
  const a = await openBlobStore(s3.url(bucket, 'one'));
  const b = await openBlobStore(s3.url(bucket, 'two/deeper'));
  const root = await openBlobStore(s3.url(bucket));
  t.teardown(async () => {
    await Promise.all([a.close(), b.close(), root.close()]);
    await emptyStore(s3.url(bucket));
  });
  await a.put('k', Buffer.from('in one'));
  await b.put('k', Buffer.from('in two'));
  t.is((await a.get('k')).toString(), 'in one');
  t.is((await b.get('k')).toString(), 'in two');
  t.deepEqual(await a.list(''), ['k']);
  t.deepEqual(await root.list(''), ['one/k', 'two/deeper/k']);
  t.is(a.url, `s3://${bucket}/one/?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1&forcePathStyle=true`);
  // S3 keys are at most 1024 bytes with the prefix: a longer one is INVALID, not a server error
  await rejectsWith(t, b.put(`${'k'.repeat(1015)}`, Buffer.from('x')), 'INVALID');
  await root.put('k'.repeat(1024), Buffer.from('fits'));
});

test('s3: URL parsing: contract keys, tuning keys, and clear INVALID errors that never echo credentials', (t) => {
  const o = parseS3Url('s3://my-bucket/a/b?endpoint=http://127.0.0.1:1&region=eu-west-1&forcePathStyle=true&maxSockets=8');
  t.like(o, { bucket: 'my-bucket', prefix: 'a/b/', endpoint: 'http://127.0.0.1:1', region: 'eu-west-1', forcePathStyle: true, maxSockets: 8 });
  t.is(parseS3Url('s3://bkt').prefix, '');
  t.false(parseS3Url('s3://bkt/p').forcePathStyle);
  for (const bad of ['s3://AKIA:s3cr3t@bkt/p', 's3://bkt/p?endpoint=http://u:s3cr3t@h/', 's3://b/p', 's3://bkt/a//b', 's3://bkt/a b',
    's3://bkt/p?nope=1', 's3://bkt/p?forcePathStyle=yes', 's3://bkt/p?partSize=100', 's3://bkt:99/p', 's3://bkt/p?endpoint=ftp://h']) {
    const err = t.throws(() => parseS3Url(bad), { instanceOf: BackendError }, bad);
    t.is(err?.code, 'INVALID', bad);
    t.notRegex(err?.message ?? '', /s3cr3t/, bad);
  }
});

test.serial('s3: with radosgw down, calls fail with BACKEND (after the SDK retries), and work again once it is back', async (t) => {
  const url = s3.url('outage', 'o', { maxAttempts: '2' });
  const store = await openBlobStore(url);
  t.teardown(async () => {
    if (s3.rgwPid() === undefined) await s3.startRgw();
    await store.close();
    await emptyStore(url);
  });
  await store.put('before', Buffer.from('1'));
  await s3.stopRgw();
  await rejectsWith(t, store.put('during', Buffer.from('2')), 'BACKEND', 'during');
  await rejectsWith(t, store.get('before'), 'BACKEND', 'before');
  await rejectsWith(t, store.list(''), 'BACKEND');
  t.true((await t.throwsAsync(store.get('before'), { instanceOf: BackendError }))?.context.unreachable === true);
  // an open while the server is down goes on (a daemon restarted during an outage); calls fail until it is
  // back, and the bucket (new here) is created before the first put
  const lateUrl = s3.url(`late-${process.pid}-${Date.now().toString(36)}`, '', { maxAttempts: '2' });
  const late = await openBlobStore(lateUrl);
  t.teardown(async () => {
    await late.close();
    await emptyStore(lateUrl);
  });
  const err = await t.throwsAsync(late.put('k', Buffer.from('x')), { instanceOf: BackendError });
  t.is(err?.code, 'BACKEND');
  t.is(err?.context.unreachable, true);
  await rejectsWith(t, late.head('k'), 'BACKEND');
  await s3.startRgw();
  await store.put('during', Buffer.from('2'));
  t.deepEqual(await store.list(''), ['before', 'during']);
  await late.put('k', Buffer.from('late'));
  t.is((await late.get('k')).toString(), 'late');
  t.deepEqual(await late.list(''), ['k']);
});

test.serial('s3: an open with wrong credentials fails at once with BACKEND (HTTP 403), not as an outage', async (t) => {
  const secret = process.env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = 'not-the-secret';
  try {
    const err = await t.throwsAsync(openBlobStore(s3.url('wrong-creds')), { instanceOf: BackendError });
    t.is(err?.code, 'BACKEND');
    t.is(err?.context.status, 403);
    t.is(err?.context.unreachable, false);
  } finally {
    process.env.AWS_SECRET_ACCESS_KEY = secret;
  }
});
