/**
 * A state disk smaller than the write-cache limit fills up (DESIGN §4 "the state disk fills (ENOSPC)").
 * The state directory is a 40 MiB tmpfs (real ENOSPC, real lmdb), the limit 1 GiB, the backend held
 * (nothing uploads) until the disk is full, then released. Writes must wait — not fail, not corrupt —
 * while a reserve stays free for the corks' metadata commits, and go on once uploads let SCOs be evicted;
 * every acknowledged write is there, also after a restart.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import { GatedStore } from './helpers/gated-store.js';
import { pattern } from './helpers/vpool.js';

const MiB = 2 ** 20;

test('a full state disk makes writes wait (never fail), keeps room for corks, and drains once the backend takes data', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-full-'));
  const state = path.join(root, 'state');
  fs.mkdirSync(state);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', state]);
  const pools: VPool[] = [];
  let gated: GatedStore | null = null;
  t.teardown(async () => {
    gated?.resume();
    for (const p of pools) await p.close().catch(() => undefined);
    execFileSync('umount', ['-l', state]);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const open = async (backendPaused: boolean): Promise<VPool> => {
    gated = new GatedStore(await openBlobStore(`file://${path.join(root, 'backend')}`));
    if (backendPaused) gated.pause();
    const pool = await openVPool({ name: 'full', stateDir: state, backend: gated, scoClusters: 64, tlogScos: 4, writeCacheBytes: 2 ** 30, scoMaxAgeMs: 3_600_000 });
    pools.push(pool);
    return pool;
  };
  const pool = await open(true);
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  const chunks: Buffer[] = [];
  let waited = false;
  for (let i = 0; i < 60; i++) {
    const chunk = pattern(i, MiB);
    chunks.push(chunk);
    let state2: string = 'pending';
    const w = v.write(i * MiB, chunk).then(() => { state2 = 'done'; }, (err) => { state2 = `failed: ${(err as { code?: string }).code} ${(err as Error).message}`; });
    for (const deadline = Date.now() + 60_000; state2 === 'pending' && !(pool.cacheStats().writeCacheWaiters > 0);) {
      if (Date.now() > deadline) throw new Error(`write ${i} neither finished nor waited`);
      await new Promise((r) => setTimeout(r, 2));
    }
    if (state2.startsWith('failed')) {
      t.fail(`write ${i} (MiB ${i}) failed instead of waiting: ${state2}`);
      return;
    }
    if (state2 === 'pending' && !waited) {
      waited = true;
      t.true(pool.cacheStats().stateDiskFull, 'the wait is because the state disk is full');
      t.true(i < 40, `the disk filled after ${i} MiB`);
      gated!.resume(); // the backend takes data again: uploads, corks, evictions make room
    }
    await w;
    t.is(state2, 'done', `write ${i}`);
  }
  t.true(waited, 'writes waited for room at some point');
  const all = Buffer.concat(chunks);
  t.true((await v.read(0, all.length)).equals(all), 'every acknowledged write reads back');
  await v.sync();
  await pool.close();
  pools.length = 0;
  const again = await open(false);
  t.true((await again.vdisk('/d').read(0, all.length)).equals(all), 'and after a restart');
});
