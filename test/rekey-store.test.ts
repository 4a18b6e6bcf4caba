/**
 * Units of key rotation (docs/encryption.md, "Key rotation"): the store reads with the key each object's
 * header names and writes with the current one; rewrite() never puts back an older content over a put, nor
 * brings back a deleted object (the per-key write lock); the marker's rotation states at open (who may mount);
 * finishRotation() drops the old key ids.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { keyIdOf, parseHeader, HEADER_SIZE } from '../volume/backend/crypto-format.js';
import { EncryptedBlobStore, EncryptionError } from '../volume/backend/encrypted-store.js';
import { MemBlobStore } from '../volume/backend/index.js';
import { ENCRYPTION_MARKER, finishRotation, openBackend } from '../volume/backend/open-backend.js';
import { setLogLevel } from '../util/log.js';
import { pattern } from './helpers/vpool.js';

setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'error');
const A = Buffer.alloc(32, 1);
const B = Buffer.alloc(32, 2);
const C = Buffer.alloc(32, 3);
const id = (k: Buffer) => keyIdOf(k).toString('hex');
let n = 0;

async function keyIdIn(inner: MemBlobStore, key: string): Promise<string> {
  const h = parseHeader(await inner.getRange(key, 0, HEADER_SIZE));
  return typeof h === 'object' ? h.keyId.toString('hex') : h;
}

test('old objects read with their key; rewrite moves them; a put or delete issued during a rewrite wins', async (t) => {
  const inner = new MemBlobStore(`mem://rekey-${process.pid}-${++n}`);
  // whole-object reads take a while, so that a write issued during a rewrite meets it between its read and its put
  const slowGet = inner.get.bind(inner);
  inner.get = async (key: string) => {
    const v = await slowGet(key);
    await sleep(10);
    return v;
  };
  const old = new EncryptedBlobStore(inner, A);
  for (let i = 0; i < 20; i++) await old.put(`o/${i}`, pattern(i, 70_000 + i));
  const s = new EncryptedBlobStore(inner, B, undefined, [A]);
  t.true((await s.get('o/3')).equals(pattern(3, 70_003)), 'read with the old key');
  t.true((await s.getRange('o/4', 66_000, 1000)).equals(pattern(4, 70_004).subarray(66_000, 67_000)));
  t.is(await s.objectKeyId('o/3'), id(A));
  // each rewrite races a put, a delete, or a ranged read of the same key
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const key = `o/${i}`;
    const r = s.rewrite(key);
    await sleep(5);
    if (i % 3 === 0) await s.put(key, pattern(100 + i, 5000));
    else if (i % 3 === 1) await s.delete(key);
    else t.true((await s.getRange(key, 60_000, 9000)).equals(pattern(i, 70_000 + i).subarray(60_000, 69_000)), 'a read during the rewrite');
    return (await r).outcome;
  }));
  t.deepEqual(results.filter((x) => x !== 'rewritten'), [], 'each rewrite ran before the write issued after it');
  for (let i = 0; i < 20; i++) {
    const key = `o/${i}`;
    if (i % 3 === 1) t.is(await inner.head(key), null, `${key} stays deleted`);
    else {
      t.is(await keyIdIn(inner, key), id(B));
      t.true((await s.get(key)).equals(i % 3 === 0 ? pattern(100 + i, 5000) : pattern(i, 70_000 + i)), `${key}: the newest content`);
    }
  }
  t.deepEqual(await s.rewrite('o/0'), { outcome: 'current', bytes: 0 });
  t.deepEqual(await s.rewrite('o/1'), { outcome: 'gone', bytes: 0 });
  // the new key alone reads everything now; the old alone reads nothing
  const onlyB = new EncryptedBlobStore(inner, B);
  t.true((await onlyB.get('o/2')).equals(pattern(2, 70_002)));
  const err = await t.throwsAsync(old.get('o/2'), { instanceOf: EncryptionError });
  t.is(err?.reason, 'WRONG_KEY');
});

async function refuses(t: ExecutionContext, p: Promise<unknown>, reason: string, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(err instanceof EncryptionError && err.reason === reason, String(err));
  t.regex(String(err?.message), re);
}

test('the marker: a rotation begins with new + old key; until it is finished only both mount; a second rotation retires both; finishing drops them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-rekey-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const url = `file://${dir}/backend`;
  const marker = () => JSON.parse(fs.readFileSync(path.join(dir, 'backend', ENCRYPTION_MARKER), 'utf8'));
  await (await openBackend(url, { encryptionKey: A })).close();
  await refuses(t, openBackend(url, { encryptionKey: B }), 'WRONG_KEY', /encrypted with key id/);
  const s1 = (await openBackend(url, { encryptionKey: B, oldKeys: [A] })) as EncryptedBlobStore;
  t.deepEqual(marker().oldKeyIds, [id(A)]);
  t.deepEqual(s1.retiring, [id(A)]);
  await s1.close();
  await refuses(t, openBackend(url, { encryptionKey: B }), 'MISSING_KEY', /middle of a key rotation/);
  await refuses(t, openBackend(url, { encryptionKey: A }), 'WRONG_KEY', /being moved from key id/);
  await refuses(t, openBackend(url, { encryptionKey: A, oldKeys: [B] }), 'WRONG_KEY', /being moved from key id/);
  // rotating again before the first one finished: C, and both B and A are needed
  await refuses(t, openBackend(url, { encryptionKey: C, oldKeys: [B] }), 'MISSING_KEY', new RegExp(id(A)));
  const s2 = (await openBackend(url, { encryptionKey: C, oldKeys: [B, A] })) as EncryptedBlobStore;
  t.is(marker().keyId, id(C));
  t.deepEqual([...marker().oldKeyIds].sort(), [id(A), id(B)].sort());
  await finishRotation(s2, { localDir: dir });
  t.deepEqual(marker(), { format: 'vpoolfs-aes-256-gcm-chunked-1', keyId: id(C) });
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'backend-marker.json'), 'utf8')).marker, marker());
  await s2.close();
  await (await openBackend(url, { encryptionKey: C })).close();
  await refuses(t, openBackend(url, { encryptionKey: B }), 'WRONG_KEY', /encrypted with key id/);
  const plain = `file://${dir}/plain`;
  await refuses(t, openBackend(plain, { encryptionKey: B, oldKeys: [A] }), 'BAD_KEY', /not encrypted/);
});
