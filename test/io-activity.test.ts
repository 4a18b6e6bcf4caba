/**
 * util/io-activity.ts: guest I/O as a background job sees it, including I/O counted elsewhere (`watch`: the
 * READs the kernel engine's reader threads answer, counted in a shared word of the vDisk's reader view).
 */
import test from 'ava';
import { IoActivity } from '../util/io-activity.js';

test('busy while I/O is in flight or ended recently; reads counted elsewhere count as just ended when noticed', (t) => {
  let now = 1000;
  const io = new IoActivity(() => now);
  t.false(io.busy(10), 'nothing yet');
  const done = io.begin();
  t.true(io.busy(10), 'in flight');
  done();
  now += 5;
  t.true(io.busy(10), 'ended 5 ms ago');
  now += 10;
  t.false(io.busy(10), 'ended 15 ms ago');

  const served = new Int32Array(new SharedArrayBuffer(4));
  io.watch(() => Atomics.load(served, 0));
  t.false(io.busy(10), 'watching changes nothing by itself');
  Atomics.add(served, 0, 1); // a READ answered in a reader thread
  now += 100;
  t.true(io.busy(10), 'the count moved: an I/O just ended');
  now += 5;
  t.true(io.busy(10), 'still recent');
  now += 10;
  t.false(io.busy(10), 'and quiet again once nothing more is counted');
});
