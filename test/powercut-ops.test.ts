/**
 * The power-cut checker (helpers/powercut-ops.ts) itself, without a mount: the sizes it allows after a cut.
 * The case is the CI round that found the kernel splitting a growing write(2) into several WRITE requests
 * (seed 1708526613, fsync covering op 1473, ops up to 1497 may have landed; the vDisk came back 23,904,256
 * bytes long: the end of the first page of a 55 KiB write at 23,901,639 that grew it to 23,956,957).
 */
import test from 'ava';
import { checkSurvivors, survivors } from './helpers/powercut-ops.js';

const s = survivors(1708526613, { synced: 1473, last: 1497, firstError: -1 });
const sizeProblems = (size: number) => checkSurvivors(s, Buffer.alloc(size), 1_000_000).filter((p) => p.startsWith('size '));

test('a size a growing write passed on its way is allowed, as are the sizes the vDisk had', (t) => {
  t.true(s.partialSizes.some(([lo, hi]) => lo < 23904256 && 23904256 <= hi), JSON.stringify(s.partialSizes));
  t.deepEqual(sizeProblems(23904256), []);
  for (const size of s.sizes) t.deepEqual(sizeProblems(size), [], `size ${size}`);
});

test('a size below the last fsync, past the last write, or in a gap a write jumped over is refused', (t) => {
  t.is(sizeProblems(s.syncedSize - 1).length, 1);
  t.is(sizeProblems(s.maxSize + 1).length, 1);
  // a growing write may start past the size (a sparse gap): a size inside the gap was never on any write's way
  const gaps = s.partialSizes.filter(([lo], i) => i > 0 && lo > s.partialSizes[i - 1][1]);
  for (const [lo] of gaps) t.is(sizeProblems(lo).length, 1, `gap below ${lo}`);
});
