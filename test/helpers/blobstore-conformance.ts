/**
 * The BlobStore conformance suite: blobStoreConformance(name, make, cleanup?) registers ava tests that
 * check every promise of volume/backend/types.ts against one implementation (round trips, overwrite,
 * ranges, head, list, delete, error codes, key validation, concurrency, close). Every test opens its own
 * fresh store with `make`, closes it afterwards and then hands it to `cleanup`.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { BackendError, type ErrorCode } from '../../util/errors.js';
import type { BlobStore } from '../../volume/backend/types.js';

/** Awaits `p`, which must reject with a BackendError of `code` (and, if given, `context.key === key`). */
export async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, code: ErrorCode, key?: string): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: BackendError });
  t.is(err?.code, code, err?.message);
  if (key !== undefined) t.is(err?.context.key, key, err?.message);
}

/** Runs `fn` over `items` with at most `width` calls in flight. */
export async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

export function blobStoreConformance(name: string, make: () => Promise<BlobStore>, cleanup?: (s: BlobStore) => Promise<void>): void {
  const it = (title: string, body: (t: ExecutionContext, s: BlobStore) => Promise<void>) =>
    test(`${name}: ${title}`, async (t) => {
      const s = await make();
      t.teardown(async () => {
        await s.close();
        await cleanup?.(s);
      });
      await body(t, s);
    });

  it('url names the backend scheme', async (t, s) => {
    t.regex(s.url, /^[a-z][a-z0-9+.-]*:/);
  });

  it('put then get returns the same bytes; a Uint8Array is accepted and a Buffer returned', async (t, s) => {
    await s.put('k', Buffer.from('hello'));
    t.deepEqual(await s.get('k'), Buffer.from('hello'));
    await s.put('dir/u', new Uint8Array([1, 2, 3]));
    const got = await s.get('dir/u');
    t.true(Buffer.isBuffer(got));
    t.deepEqual([...got], [1, 2, 3]);
  });

  it('an empty object round-trips', async (t, s) => {
    await s.put('empty', new Uint8Array(0));
    t.is((await s.get('empty')).length, 0);
    t.deepEqual(await s.head('empty'), { size: 0 });
    t.deepEqual(await s.list(''), ['empty']);
  });

  it('a 5 MiB object round-trips', async (t, s) => {
    const data = randomBytes(5 * 1024 * 1024);
    await s.put('big/object', data);
    t.deepEqual(await s.head('big/object'), { size: data.length });
    t.true((await s.get('big/object')).equals(data));
  });

  it('put and get copy the data', async (t, s) => {
    const src = Buffer.from('abcdef');
    await s.put('copy', src);
    src.fill(0);
    const first = await s.get('copy');
    t.is(first.toString(), 'abcdef');
    first.fill(0);
    t.is((await s.get('copy')).toString(), 'abcdef');
  });

  it('put overwrites (larger, smaller, the same again)', async (t, s) => {
    const big = randomBytes(100_000);
    await s.put('o', Buffer.from('short'));
    await s.put('o', big);
    t.true((await s.get('o')).equals(big));
    await s.put('o', Buffer.from('x'));
    await s.put('o', Buffer.from('x'));
    t.is((await s.get('o')).toString(), 'x');
    t.deepEqual(await s.head('o'), { size: 1 });
    t.deepEqual(await s.list(''), ['o']);
  });

  it('getRange at the start, middle and end, and zero length at the end', async (t, s) => {
    const data = randomBytes(1000);
    await s.put('r/obj', data);
    t.deepEqual(await s.getRange('r/obj', 0, 10), data.subarray(0, 10));
    t.deepEqual(await s.getRange('r/obj', 400, 123), data.subarray(400, 523));
    t.deepEqual(await s.getRange('r/obj', 990, 10), data.subarray(990));
    t.deepEqual(await s.getRange('r/obj', 0, 1000), data);
    t.is((await s.getRange('r/obj', 1000, 0)).length, 0);
    t.is((await s.getRange('r/obj', 500, 0)).length, 0);
    await s.put('r/empty', new Uint8Array(0));
    t.is((await s.getRange('r/empty', 0, 0)).length, 0);
  });

  it('getRange past the end or with a bad offset/length is INVALID; of a missing object NOT_FOUND', async (t, s) => {
    await s.put('r', randomBytes(100));
    await rejectsWith(t, s.getRange('r', 95, 6), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', 100, 1), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', 101, 0), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', -1, 5), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', 0, -1), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', 1.5, 1), 'INVALID', 'r');
    await rejectsWith(t, s.getRange('r', Number.NaN, 1), 'INVALID', 'r');
    await s.put('e', new Uint8Array(0));
    await rejectsWith(t, s.getRange('e', 0, 1), 'INVALID', 'e');
    await rejectsWith(t, s.getRange('missing', 0, 1), 'NOT_FOUND', 'missing');
  });

  it('head of an existing and of a missing object', async (t, s) => {
    await s.put('h/one', randomBytes(4321));
    t.deepEqual(await s.head('h/one'), { size: 4321 });
    t.is(await s.head('h/two'), null);
    t.is(await s.head('h'), null);
    t.is(await s.head('nothing/here/at/all'), null);
  });

  it('get of a missing object is NOT_FOUND with the key in context', async (t, s) => {
    await rejectsWith(t, s.get('no/such/object'), 'NOT_FOUND', 'no/such/object');
    await s.put('gone', Buffer.from('x'));
    await s.delete('gone');
    await rejectsWith(t, s.get('gone'), 'NOT_FOUND', 'gone');
    await s.put('p/q', Buffer.from('x'));
    await rejectsWith(t, s.get('p'), 'NOT_FOUND', 'p');
  });

  it('list with nested prefixes', async (t, s) => {
    const keys = ['top', 'vd/1/sco/00001', 'vd/1/sco/00002', 'vd/1/tlog/a', 'vd/2/sco/00001'];
    for (const k of keys) await s.put(k, Buffer.from(k));
    t.deepEqual(await s.list(''), keys);
    t.deepEqual(await s.list('vd'), keys.slice(1));
    t.deepEqual(await s.list('vd/'), keys.slice(1));
    t.deepEqual(await s.list('vd/1/'), keys.slice(1, 4));
    t.deepEqual(await s.list('vd/1/sco/'), keys.slice(1, 3));
    t.deepEqual(await s.list('vd/1/sco/0000'), keys.slice(1, 3));
    t.deepEqual(await s.list('vd/1/sco/00001'), ['vd/1/sco/00001']);
    t.deepEqual(await s.list('t'), ['top']);
  });

  it('list tells sibling prefixes apart (a/b vs a/bc)', async (t, s) => {
    for (const k of ['a/b/x', 'a/b/y', 'a/bc', 'a/bcd/z', 'a/c']) await s.put(k, Buffer.from(k));
    t.deepEqual(await s.list('a/b/'), ['a/b/x', 'a/b/y']);
    t.deepEqual(await s.list('a/b'), ['a/b/x', 'a/b/y', 'a/bc', 'a/bcd/z']);
    t.deepEqual(await s.list('a/bc'), ['a/bc', 'a/bcd/z']);
    t.deepEqual(await s.list('a/bcd'), ['a/bcd/z']);
    t.deepEqual(await s.list('a/bc/'), []);
  });

  it('list returns [] when nothing matches', async (t, s) => {
    t.deepEqual(await s.list(''), []);
    await s.put('x/y', Buffer.from('1'));
    t.deepEqual(await s.list('nope'), []);
    t.deepEqual(await s.list('nope/deeper/'), []);
    t.deepEqual(await s.list('x/y/'), []);
    t.deepEqual(await s.list('x/z'), []);
  });

  it('list is sorted in byte order', async (t, s) => {
    const sorted = ['0', 'A', 'Z/z', '_', 'a-b', 'a.b', 'a/b', 'a0', 'a_', 'b'];
    for (const k of ['b', 'a/b', 'a_', '0', 'a.b', 'Z/z', 'a0', '_', 'A', 'a-b']) await s.put(k, Buffer.from(k));
    t.deepEqual(await s.list(''), sorted);
    t.deepEqual(await s.list('a'), ['a-b', 'a.b', 'a/b', 'a0', 'a_']);
  });

  it('list with startAfter: only the keys after it, across directories and pages', async (t, s) => {
    const sorted = ['0', 'A', 'Z/z', '_', 'a-b', 'a.b', 'a/b', 'a/b/c', 'a0', 'a_', 'b'];
    for (const k of sorted.filter((k) => k !== 'a/b')) await s.put(k, Buffer.from(k));
    await s.put('a/b/c', Buffer.from('x'));
    const keys = sorted.filter((k) => k !== 'a/b');
    // every cut point, a key or not, in or between directories
    for (const after of ['', '0', '1', 'Z', 'Z/z', 'a', 'a.b', 'a/', 'a/b', 'a/b/c', 'a/c', 'a0', 'b', 'c']) {
      t.deepEqual(await s.list('', { startAfter: after }), keys.filter((k) => k > after), `startAfter ${after}`);
      t.deepEqual(await s.list('a', { startAfter: after }), keys.filter((k) => k.startsWith('a') && k > after), `prefix a, startAfter ${after}`);
    }
    const many = Array.from({ length: 1500 }, (_, i) => `n/${i.toString(16).padStart(8, '0')}`);
    await pool(many, 32, (k) => s.put(k, Buffer.from(k)));
    t.deepEqual(await s.list('n/', { startAfter: many[1234] }), many.slice(1235));
    t.deepEqual(await s.list('n/', { startAfter: 'n/00000001' }), many.slice(2)); // past a first page of 1000
  });

  it('list returns all of 1500 keys, sorted', async (t, s) => {
    const keys = Array.from({ length: 1500 }, (_, i) => `many/${i % 3}/k${i}`);
    await pool(keys, 32, (k) => s.put(k, Buffer.from(k)));
    await s.put('other', Buffer.from('not listed under many/'));
    const expected = [...keys].sort();
    t.deepEqual(await s.list('many/'), expected);
    t.deepEqual(await s.list('many/1/k1'), expected.filter((k) => k.startsWith('many/1/k1')));
    t.is((await s.list('')).length, 1501);
  });

  it('delete removes the object, leaves its siblings and is idempotent', async (t, s) => {
    await s.put('d/a', Buffer.from('a'));
    await s.put('d/b', Buffer.from('b'));
    await s.put('d/ab', Buffer.from('ab'));
    await s.delete('d/a');
    t.is(await s.head('d/a'), null);
    await rejectsWith(t, s.get('d/a'), 'NOT_FOUND', 'd/a');
    t.deepEqual(await s.list(''), ['d/ab', 'd/b']);
    await s.delete('d/a');
    await s.delete('never/was/here');
    await s.delete('d');
    await s.delete('d/b');
    await s.delete('d/ab');
    t.deepEqual(await s.list(''), []);
    await s.put('d/a', Buffer.from('again'));
    t.is((await s.get('d/a')).toString(), 'again');
  });

  it('invalid keys are INVALID in every method and change nothing', async (t, s) => {
    const bad = ['', '/abs', '/', 'a/../b', '..', '../x', 'a/..', '.', './a', 'a/./b', 'a//b', 'a/', 'a b', 'a\\b', 'a:b', 'a*b'];
    bad.push('caf\u00e9', 'a\u0000b', 'a~b', 'tab\t', 'k'.repeat(1025), `${'s'.repeat(100)}/`.repeat(10) + 'e'.repeat(25));
    for (const key of bad) {
      await rejectsWith(t, s.put(key, Buffer.from('x')), 'INVALID', key);
      await rejectsWith(t, s.get(key), 'INVALID', key);
      await rejectsWith(t, s.getRange(key, 0, 0), 'INVALID', key);
      await rejectsWith(t, s.head(key), 'INVALID', key);
      await rejectsWith(t, s.delete(key), 'INVALID', key);
    }
    for (const prefix of ['/abs', '../', 'a/../', 'a b', 'x~']) await rejectsWith(t, s.list(prefix), 'INVALID');
    t.deepEqual(await s.list(''), []);
  });

  it('a key of exactly 1024 bytes with every allowed character is valid', async (t, s) => {
    const key = `${'s'.repeat(99)}/`.repeat(9) + 'Az09._-'.repeat(17) + 'x'.repeat(5);
    t.is(Buffer.byteLength(key), 1024);
    await s.put(key, Buffer.from('long'));
    t.is((await s.get(key)).toString(), 'long');
    t.deepEqual(await s.list(''), [key]);
    await s.delete(key);
    t.deepEqual(await s.list(''), []);
  });

  it('concurrent puts of distinct keys all land whole', async (t, s) => {
    const items = Array.from({ length: 64 }, (_, i) => ({ key: i % 2 ? `c/${i}` : `c/${i % 8}/deep/${i}`, data: randomBytes(1 + i * 997) }));
    await Promise.all(items.map(({ key, data }) => s.put(key, data)));
    for (const { key, data } of items) t.true((await s.get(key)).equals(data), key);
    t.is((await s.list('c/')).length, 64);
  });

  it('concurrent overwrites of one key leave exactly one whole version', async (t, s) => {
    const versions = Array.from({ length: 12 }, (_, i) => Buffer.alloc(10_000 + i * 1000, i + 1));
    await Promise.all(versions.map((v) => s.put('same', v)));
    const got = await s.get('same');
    t.true(versions.some((v) => v.equals(got)));
    t.deepEqual(await s.list(''), ['same']);
  });

  it('createExclusive, when offered: of concurrent creates of one key exactly one wins and its bytes stay; never over an existing object', async (t, s) => {
    // optional in the seam, but every store here offers it (the claim relies on it: docs/cluster.md)
    if (s.createExclusive === undefined) return void t.fail('no createExclusive');
    for (let round = 0; round < 5; round++) {
      const key = `pool/claim/${round}`;
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.createExclusive!(key, Buffer.from(`writer ${i}`))));
      const winners = results.flatMap((won, i) => (won ? [i] : []));
      t.is(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
      t.is((await s.get(key)).toString(), `writer ${winners[0]}`);
      t.false(await s.createExclusive(key, Buffer.from('late')));
      t.is((await s.get(key)).toString(), `writer ${winners[0]}`);
    }
    t.deepEqual(await s.list('pool/claim/'), ['pool/claim/0', 'pool/claim/1', 'pool/claim/2', 'pool/claim/3', 'pool/claim/4'], 'no temp file or partial object is listed');
    await rejectsWith(t, s.createExclusive('../x', Buffer.from('v')), 'INVALID');
  });

  it('concurrent puts and deletes in one directory do not interfere', async (t, s) => {
    for (let i = 0; i < 30; i++) {
      await s.put('r/s/old', Buffer.from('old'));
      await Promise.all([s.delete('r/s/old'), s.put(`r/s/new${i}`, Buffer.from(`new${i}`))]);
      t.is((await s.get(`r/s/new${i}`)).toString(), `new${i}`);
      t.deepEqual(await s.list('r/'), [`r/s/new${i}`]);
      await s.delete(`r/s/new${i}`);
    }
    t.deepEqual(await s.list(''), []);
  });

  it('every call after close fails with CLOSED; close again resolves', async (t, s) => {
    await s.put('k', Buffer.from('v'));
    await s.close();
    await rejectsWith(t, s.put('k', Buffer.from('w')), 'CLOSED');
    await rejectsWith(t, s.get('k'), 'CLOSED');
    await rejectsWith(t, s.getRange('k', 0, 1), 'CLOSED');
    await rejectsWith(t, s.head('k'), 'CLOSED');
    await rejectsWith(t, s.list(''), 'CLOSED');
    await rejectsWith(t, s.delete('k'), 'CLOSED');
    await t.notThrowsAsync(s.close());
  });
}
