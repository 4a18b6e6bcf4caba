/**
 * Units of the backend move's mirror (volume/policy/mirror-store.ts): reads from the old backend, writes to
 * both; sync() makes the new backend's object equal the old one's and never puts back an older content over
 * a put, nor brings back a deleted object (the per-key write lock); after the switch everything goes to the
 * new backend alone.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemBlobStore } from '../volume/backend/index.js';
import { MirrorStore } from '../volume/policy/mirror-store.js';
import { pattern } from './helpers/vpool.js';

let n = 0;
const mem = () => new MemBlobStore(`mem://move-${process.pid}-${++n}`);

test('sync copies, deletes extras, and a put or delete issued during a sync wins; after the switch only the new backend is used', async (t) => {
  const x = mem();
  const y = mem();
  for (let i = 0; i < 12; i++) await x.put(`o/${i}`, pattern(i, 9000));
  await y.put('o/1', pattern(999, 9000)); // other bytes: copied over
  await y.put('extra', Buffer.from('not in X')); // not in X: deleted
  // whole-object reads of X take a while, so that a write issued during a sync meets it between its read and its put
  const xGet = x.get.bind(x);
  x.get = async (key: string) => {
    const v = await xGet(key);
    await sleep(10);
    return v;
  };
  const m = new MirrorStore(x, y);
  t.true((await m.get('o/2')).equals(pattern(2, 9000)), 'reads from X');
  t.deepEqual(await m.list('o/'), await x.list('o/'));
  const outcomes = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
    const key = `o/${i}`;
    const r = m.sync(key);
    await sleep(5);
    if (i % 3 === 0) await m.put(key, pattern(100 + i, 500));
    else if (i % 3 === 1) await m.delete(key);
    return r;
  }));
  t.deepEqual(outcomes, Array(12).fill('copied'));
  t.is(await m.sync('extra'), 'deleted');
  t.is(await y.head('extra'), null);
  for (let i = 0; i < 12; i++) {
    const key = `o/${i}`;
    if (i % 3 === 1) {
      t.is(await y.head(key), null, `${key} stays deleted in Y`);
      t.is(await x.head(key), null, `${key} deleted in X`);
    } else {
      const want = i % 3 === 0 ? pattern(100 + i, 500) : pattern(i, 9000);
      t.true((await y.get(key)).equals(want), `${key}: Y has the newest content`);
      t.true((await xGet(key)).equals(want), `${key}: X too`);
      t.is(await m.sync(key), 'same');
    }
  }
  await m.switchToTarget();
  await m.put('after', Buffer.from('y only'));
  t.is(await x.head('after'), null);
  t.true((await m.get('after')).equals(Buffer.from('y only')), 'reads from Y after the switch');
  t.is(m.url, y.url);
});
