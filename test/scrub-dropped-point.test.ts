/**
 * Regression (scrub-model seed 613860665): a snapshot taken right after a rollback, before any write, names
 * a TLog number inside the range that rollback dropped (its TLog is `openTlogNumber - 1`, the last dropped
 * one). Once the earlier snapshot is deleted, the segment that ends at that snapshot holds the TLogs before
 * the rollback point. The scrub used to name that segment by the snapshot's TLog, a dropped number, so every
 * replay (`chainItems` skips dropped numbers) left the segment out: the snapshot read as an empty disk, the
 * head lost that segment's clusters on a rebuild, and the sweep deleted the segment as unreferenced.
 * Deterministic: fixed writes, one local scrub (job, apply, sweep), then a rebuild from the backend.
 */
import test from 'ava';
import fs from 'node:fs';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import { pointData } from './helpers/scrub-check.js';
import { isDropped } from '../volume/lineage/snapshot-store.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';

test('scrub: a snapshot whose TLog number a rollback dropped keeps its data through the scrub, the sweep and a rebuild', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  const size = 64 * CS + 123;
  await pool.createFile('/a', 0o644, 0, 0, size);
  const v0 = pool.vdisk('/a');
  const first = pattern(1, 40 * CS);
  await v0.write(0, first);
  await pool.snapshots.create('/a', 'a');
  await v0.write(8 * CS, pattern(2, 24 * CS)); // several TLogs that the rollback drops
  await pool.snapshots.rollback('/a', 'a');
  await pool.snapshots.create('/a', 'b'); // no write in between: its TLog is the last dropped one
  await pool.snapshots.remove('/a', 'a'); // so the segment ending at b holds the TLogs of `first`
  await v0.write(30 * CS, pattern(3, 20 * CS));
  await v0.write(31 * CS, pattern(4, 3 * CS)); // an overwrite: garbage, so the scrub writes a new chain

  const want = Buffer.alloc(size);
  first.copy(want, 0);
  const v = pool.vdisk('/a') as VDiskImpl;
  await v.syncToBackend();
  const b = v.docs.doc.snapshots.find((s) => s.name === 'b')!;
  t.true(isDropped(v.docs.doc, b.tlog), `the case under test: snapshot b's TLog ${b.tlog} is in a dropped range ${JSON.stringify(v.docs.doc.dropped)}`);

  const rep = await pool.scrub.scrub('/a');
  t.is(rep.outcome, 'applied');
  const doc = v.docs.doc;
  t.deepEqual(doc.scrub!.segments.filter((e) => isDropped(doc, e)), [], 'no segment is named by a dropped TLog number');
  const got = await pointData(v.ctx.backend, v.id, doc, b.tlog);
  t.is(got.size, size, 'snapshot b has its size through the new chain');
  const zero = Buffer.alloc(CS);
  for (let a = 0; a * CS < size; a++) {
    const w = want.subarray(a * CS, a * CS + CS);
    if (!(got.clusters.get(a) ?? zero).subarray(0, w.length).equals(w)) return void t.fail(`snapshot b cluster ${a} differs after the scrub`);
  }
  t.deepEqual(await pool.scrub.sweep('/a', true), [], 'nothing left for gc');
  const head = await pool.vdisk('/a').read(0, size);

  // a rebuild from the backend alone: the head as before, and a rollback to b shows b
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  t.true((await pool.vdisk('/a').read(0, size)).equals(head), 'the head after a rebuild equals the head before it');
  await pool.snapshots.rollback('/a', 'b');
  t.true((await pool.vdisk('/a').read(0, size)).equals(want), 'a rollback to b after the rebuild shows b');
});
