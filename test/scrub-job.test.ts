/**
 * The scrub job alone (volume/scrub/scrub-job.ts), against the backend a real vPool left behind: a seeded
 * history of overwrites, snapshots, snapshot deletes, resizes, a rollback and a clone; then the job runs on
 * the backend only, and the doc is switched to its result the way the owner's apply does. Every point of
 * every vDisk (each snapshot and the head) must show the same bytes through the new chain as through the
 * old one, the clone must not notice its parent's scrub, the relocations must turn the old head map into
 * the new one, and a second scrub must find nothing more to do. VPOOLFS_SEED replays a run;
 * VPOOLFS_SCRUB_ROUNDS runs more seeds.
 */
import test from 'ava';
import path from 'node:path';
import { poolEnv } from './helpers/vpool.js';
import { pattern, rng } from './helpers/ref-disk.js';
import { allPoints, diffPoints } from './helpers/scrub-check.js';
import { openBlobStore } from '../volume/backend/index.js';
import type { BlobStore } from '../volume/backend/types.js';
import { backendDoc, stateAt, type ChainDoc } from '../volume/lineage/chain.js';
import { loadRelocations, scrubVDisk } from '../volume/scrub/scrub-job.js';
import { backendDocKey } from '../volume/lineage/snapshot-store.js';
import type { ScrubResult } from '../volume/lineage/scrub-state.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;

/** The doc as the owner's apply makes it (volume/scrub/apply.ts does the same, plus the map and the sweep). */
function switched(doc: ChainDoc, r: ScrubResult): ChainDoc {
  if (r.nothingToDo) return doc;
  return { ...doc, gen: doc.gen + 1, scrub: r.state, retiredScrubs: [...(doc.retiredScrubs ?? []), ...(doc.scrub ? [doc.scrub.id] : [])] };
}

async function scrubAndCheck(t: import('ava').ExecutionContext, backend: BlobStore, id: string, scratch: string, where: string): Promise<ScrubResult> {
  const doc = (await backendDoc(backend, id))!;
  const want = await allPoints(backend, id, doc);
  const before = await stateAt(backend, id, doc);
  const result = await scrubVDisk(backend, id, { scratchDir: scratch, scoClusters: 8 });
  const next = switched(doc, result);
  const got = await allPoints(backend, id, next);
  t.is(diffPoints(want, got), '', `${where}: every point reads the same after the scrub`);
  // the relocations turn the old head map into the new one (own entries; clone entries never move)
  const after = await stateAt(backend, id, next);
  const rel = await loadRelocations(backend, result);
  for (let i = 0; i < rel.length; i += 5) {
    const loc = before.map.get(rel[i]);
    t.deepEqual([loc?.sco, loc?.slot, loc?.depth], [rel[i + 1], rel[i + 2], 0], `${where}: relocation ${i / 5} starts where the old map pointed`);
    before.map.set(rel[i], rel[i + 3], rel[i + 4], 0);
  }
  t.deepEqual([...before.map.entries()], [...after.map.entries()], `${where}: old head map + relocations = new head map`);
  await backend.put(backendDocKey(id), Buffer.from(JSON.stringify(next)));
  return result;
}

async function oneRun(t: import('ava').ExecutionContext, seed: number): Promise<void> {
  const r = rng(seed);
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/a', 0o644, 0, 0, 256 * CS);
  const snaps: string[] = [];
  let cloned = false;
  let rolledBack = false;
  for (let i = 0; i < 300; i++) {
    const v = pool.vdisk('/a');
    const k = r();
    if (k < 0.75) {
      const n = 1 + Math.floor(r() * 12);
      const off = Math.floor(r() * Math.max(1, v.size / CS - n)) * CS + (r() < 0.2 ? Math.floor(r() * CS) : 0);
      await v.write(off, pattern(seed, i, n * CS - (r() < 0.2 ? 100 : 0)));
    } else if (k < 0.85) {
      const name = `s${i}`;
      await pool.snapshots.create('/a', name);
      snaps.push(name);
    } else if (k < 0.9 && snaps.length > 2) {
      const [name] = snaps.splice(1 + Math.floor(r() * (snaps.length - 2)), 1);
      const got = await pool.snapshots.remove('/a', name).then(() => 'OK', (e: { code?: string }) => e.code);
      if (got !== 'OK') snaps.splice(0, 0, name); // it has a clone: kept (order no longer matters here)
    } else if (k < 0.93) {
      await v.resize(Math.floor((128 + r() * 256) * CS + (r() < 0.5 ? r() * CS : 0)));
    } else if (k < 0.95 && !rolledBack && snaps.length > 1 && i > 150) {
      const name = snaps[snaps.length - 2];
      await pool.snapshots.rollback('/a', name);
      snaps.splice(snaps.length - 1);
      rolledBack = true;
    } else if (k < 0.97 && !cloned && snaps.length > 0) {
      await pool.snapshots.clone('/a', snaps[Math.floor(r() * snaps.length)], '/c');
      cloned = true;
    } else if (cloned) {
      await pool.vdisk('/c').write(Math.floor(r() * 64) * CS, pattern(seed, i, CS * (1 + Math.floor(r() * 4))));
    }
  }
  const ids = new Map<string, string>([['/a', pool.vdisk('/a').info().id]]);
  if (cloned) ids.set('/c', pool.vdisk('/c').info().id);
  await env.close(pool);

  const backend = await openBlobStore(env.backendUrl);
  try {
    const scratch = path.join(env.root, 'scratch');
    const cloneBefore = cloned ? await allPoints(backend, ids.get('/c')!, (await backendDoc(backend, ids.get('/c')!))!) : null;
    const first = await scrubAndCheck(t, backend, ids.get('/a')!, scratch, `seed ${seed} /a first scrub`);
    t.log(`seed ${seed}: /a ${JSON.stringify(first.stats)}`);
    t.false(first.nothingToDo, 'an overwrite-heavy history has garbage');
    t.true(first.stats.garbageBytesBefore > 0);
    if (cloneBefore !== null) {
      const cid = ids.get('/c')!;
      t.is(diffPoints(cloneBefore, await allPoints(backend, cid, (await backendDoc(backend, cid))!)), '', `seed ${seed}: the clone reads the same after its parent's scrub`);
      // whether the clone pins any SCO the scrub would rewrite depends on the seed (its base's SCOs may all be
      // live enough to stay): the check is that the clone reads the same, above; the count is for the log
      t.log(`seed ${seed}: the clone pinned ${first.stats.scosPinned} of its parent's SCOs`);
      await scrubAndCheck(t, backend, cid, scratch, `seed ${seed} /c`);
    }
    const second = await scrubAndCheck(t, backend, ids.get('/a')!, scratch, `seed ${seed} /a second scrub`);
    t.true(second.nothingToDo, `a second scrub finds nothing to do (${JSON.stringify(second.stats)})`);
  } finally {
    await backend.close();
  }
}

test('scrub job: every point of a vDisk and its clone reads the same through the new chain', async (t) => {
  const rounds = Number(process.env.VPOOLFS_SCRUB_ROUNDS ?? 2);
  const { seed: base } = seeded(t);
  for (let i = 0; i < rounds; i++) await oneRun(t, base + i);
});
