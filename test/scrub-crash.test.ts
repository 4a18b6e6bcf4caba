/**
 * kill -9 during a scrub (issue 12): the owner killed at a random backend call of its scrub (the job's
 * puts, the doc shipped after the apply's commit, the sweep's deletes), and a remote scrubber killed at a
 * random put of its job. After each: the vPool restarts (locally, and then rebuilt from the
 * backend alone), every byte of the vDisk and of each kept snapshot equals the reference, and after a gc
 * and a new scrub a `gc --dry-run` finds nothing left behind. VPOOLFS_SEED replays; VPOOLFS_SCRUB_KILLS
 * sets the number of kills per mode.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { poolEnv } from './helpers/vpool.js';
import { referenceOf } from './helpers/scrub-history.js';
import { pointData, sameAsRef } from './helpers/scrub-check.js';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { seeded } from './helpers/seed.js';

const CHILD = fileURLToPath(new URL('./helpers/scrub-crash-child.js', import.meta.url));

/** Runs the child until it is held at its `hold`-th backend call (then SIGKILL), or until it is done. */
async function runChild(env: ReturnType<typeof poolEnv>, seed: number, mode: 'owner' | 'remote', hold: number): Promise<string> {
  const child = spawn(process.execPath, [CHILD, env.state, env.backendDir, String(seed), mode, String(hold)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise((r) => child.once('exit', r));
  const what = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /held (.*)\n/.exec(out);
      if (m !== null) resolve(`killed at ${m[1]}`);
      else if (out.includes('done\n')) resolve('finished before the hold');
    });
    child.once('exit', (code) => (out.includes('done\n') ? resolve('finished before the hold') : reject(new Error(`the child exited (${code}): ${out}`))));
  });
  child.kill('SIGKILL');
  await exited;
  return what;
}

async function check(t: import('ava').ExecutionContext, pool: VPool, seed: number, where: string): Promise<boolean> {
  const ref = referenceOf(seed);
  const v = pool.vdisk('/d') as VDiskImpl;
  if (v.size !== ref.head.size || !(await v.read(0, v.size)).equals(ref.head.read(0, ref.head.size))) {
    t.fail(`${where}: /d differs from the reference`);
    return false;
  }
  t.deepEqual(v.docs.doc.snapshots.map((s) => s.name), [...ref.snapshots.keys()], `${where}: the snapshots`);
  await v.syncToBackend();
  for (const s of v.docs.doc.snapshots) {
    const want = ref.snapshots.get(s.name)!;
    if (!sameAsRef(await pointData(v.ctx.backend, v.id, v.docs.doc, s.tlog), want)) {
      t.fail(`${where}: snapshot ${s.name} differs from the reference`);
      return false;
    }
  }
  return true;
}

for (const mode of ['owner', 'remote'] as const) {
  test(`kill -9 of the ${mode === 'owner' ? 'owner while scrubbing and applying' : 'remote scrubber'}: nothing lost, nothing left behind`, async (t) => {
    const { seed: base, rand: r } = seeded(t);
    const kills = Number(process.env.VPOOLFS_SCRUB_KILLS ?? 3);
    for (let k = 0; k < kills; k++) {
      const seed = base + k;
      const env = poolEnv(t);
      const hold = 1 + Math.floor(r() * (mode === 'owner' ? 40 : 25));
      const what = await runChild(env, seed, mode, hold);
      t.log(`seed ${seed}: ${mode}, ${what}`);
      let pool = await env.open();
      if (!(await check(t, pool, seed, `seed ${seed} after the kill (${what}), local restart`))) return;
      if (mode === 'remote') {
        const applied = await pool.scrub.applyPending('/d');
        t.log(`seed ${seed}: the owner applied ${applied === null ? 'nothing (no whole result)' : `result ${applied.scrub}`}`);
        if (!(await check(t, pool, seed, `seed ${seed} after applying what the killed scrubber left`))) return;
      }
      await env.close(pool);
      fs.rmSync(env.state, { recursive: true, force: true });
      pool = await env.open();
      if (!(await check(t, pool, seed, `seed ${seed} after a rebuild from the backend`))) return;
      pool.scrub.staleScrubMs = 0; // what a killed scrub left is old enough now
      await pool.scrub.sweep('/d', false);
      await pool.scrub.scrub('/d');
      if (!(await check(t, pool, seed, `seed ${seed} after gc and a new scrub`))) return;
      t.deepEqual(await pool.scrub.sweep('/d', true), [], `seed ${seed}: gc --dry-run finds nothing left behind`);
      await env.close(pool);
    }
  });
}
