/**
 * A guest read while a scrub's apply commits (volume/vdisk/scrub-apply.ts): the map has moved to the new
 * scrub SCOs, the doc that names their keys is not switched yet. The read must find them (it failed
 * NOT_FOUND — ENOENT in the guest — when the key came from the doc alone: seen in bench:scrub with fio
 * reading during an unthrottled scrub). The apply's metadata commit is held (a wrapper around the real lmdb
 * store) while the whole vDisk is read from a vPool rebuilt from the backend; every byte must be right.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { poolEnv } from './helpers/vpool.js';
import { pattern, rng } from './helpers/ref-disk.js';
import { FaultyMds } from './helpers/faulty-mds.js';
import { openMetadataStore } from '../mds/index.js';
import type { MetadataOp } from '../mds/types.js';
import { runSeed } from './helpers/seed.js';

const CS = 4096;
const CLUSTERS = 256;
const seed = runSeed();

/** Holds the commit that carries a doc with scrub SCO ranges (the apply's) until `during` has run. */
class HoldingMds extends FaultyMds {
  during: (() => Promise<void>) | null = null;
  held = 0;
  override async commit(ops: ReadonlyArray<MetadataOp>): Promise<void> {
    const run = this.during;
    if (run !== null && ops.some((o) => o.value !== null && o.value.toString().includes('"scoRanges":[{'))) {
      this.during = null;
      this.held++;
      await run();
    }
    return super.commit(ops);
  }
}

test('a read during the apply finds the new scrub SCOs', async (t) => {
  t.timeout(120_000);
  t.log(`seed ${seed} (VPOOLFS_SEED replays it)`);
  const r = rng(seed);
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/a', 0o644, 0, 0, CLUSTERS * CS);
  const ref = Buffer.alloc(CLUSTERS * CS);
  const v0 = pool.vdisk('/a');
  for (let i = 0; i < 200; i++) {
    const n = 1 + Math.floor(r() * 8);
    const off = Math.floor(r() * (CLUSTERS - n)) * CS;
    const data = pattern(seed, i, n * CS);
    await v0.write(off, data);
    data.copy(ref, off);
    if (i === 60) await pool.snapshots.create('/a', 's');
  }
  await pool.snapshots.remove('/a', 's');
  await env.close(pool);
  // rebuilt from the backend alone: the reads below fetch from the backend
  fs.rmSync(env.state, { recursive: true, force: true });
  fs.mkdirSync(env.state, { recursive: true });
  const mds = new HoldingMds(openMetadataStore('lmdb', path.join(env.state, 'mds')));
  pool = await env.open({ metadataStore: mds });
  t.teardown(() => mds.inner.close().catch(() => undefined));
  let got = null as Buffer | Error | null;
  mds.during = async () => {
    got = await pool.vdisk('/a').read(0, CLUSTERS * CS).catch((e: Error) => e);
  };
  const report = await pool.scrub.scrub('/a');
  t.is(mds.held, 1, 'the apply commit was held once');
  t.true(report.relocated > 0, `the scrub moved clusters (${report.relocated})`);
  t.false(got instanceof Error, `the read during the apply failed: ${String(got)}`);
  t.true(got !== null && (got as Buffer).equals(ref), 'the read during the apply returned every byte right');
  t.true((await pool.vdisk('/a').read(0, CLUSTERS * CS)).equals(ref), 'and after it');
  await env.close(pool);
});
