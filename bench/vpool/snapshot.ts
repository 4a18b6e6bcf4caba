/**
 * Snapshots and clones at the volume layer (issue 4, "Speed"), in one run:
 *
 *   snapshot latency   snapshots.create() on a vDisk with nothing new since the last snapshot, and with
 *                      --dirty MiB written since (the open SCO and TLog are closed and fsynced)
 *   clone latency      snapshots.clone() of a snapshot already in the backend, of a vDisk of --size written
 *                      in full (reads its TLogs, writes the clone's base)
 *   cold reads         a 1 MiB sequential read of the whole fresh clone after a rebuild from the backend (state
 *                      directory removed: write cache and read cache empty), then the same of its parent after
 *                      another rebuild; the ratio clone / parent is printed (the reference, same run)
 *
 * Medians of --runs runs. The backend is file:// under --dir (default the OS temp directory).
 *
 *   node dist/bench/vpool/snapshot.js [--size 256M] [--dirty 16] [--runs 5] [--dir BASE]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openVPool } from '../../volume/vpool.js';
import type { VPool } from '../../volume/types.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';
import { setLogLevel } from '../../util/log.js';
import { median } from '../shared/fio.js';

const MiB = 2 ** 20;

const { values: args } = parseArgs({
  options: { size: { type: 'string', default: '256' }, dirty: { type: 'string', default: '16' }, runs: { type: 'string', default: '5' }, dir: { type: 'string' } },
});
const size = Number.parseInt(String(args.size), 10) * MiB;
const dirty = Number.parseInt(String(args.dirty), 10) * MiB;
const runs = Number.parseInt(String(args.runs), 10);
setLogLevel('warn');

const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-snap-'));
const opts: VPoolOptions = { name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`, scoMaxAgeMs: 3_600_000 };
const big = randomBytes(MiB);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function readAll(pool: VPool, p: string): Promise<number> {
  const v = pool.vdisk(p);
  const t0 = performance.now();
  for (let pos = 0; pos < v.size; pos += MiB) await v.read(pos, MiB);
  return v.size / 1e6 / ((performance.now() - t0) / 1000);
}

async function rebuild(pool: VPool): Promise<VPool> {
  await pool.close();
  fs.rmSync(opts.stateDir, { recursive: true, force: true });
  return openVPool(opts);
}

try {
  let pool = await openVPool(opts);
  await pool.createFile('/parent', 0o644, 0, 0, size);
  const v = pool.vdisk('/parent');
  for (let pos = 0; pos < size; pos += MiB) await v.write(pos, big);
  await pool.syncToBackend();

  const clean: number[] = [];
  const withDirty: number[] = [];
  for (let i = 0; i < runs; i++) {
    clean.push(await timed(() => pool.snapshots.create('/parent', `clean${i}`)));
    for (let pos = 0; pos < dirty; pos += MiB) await v.write((pos + i * dirty) % size, big);
    withDirty.push(await timed(() => pool.snapshots.create('/parent', `dirty${i}`)));
  }
  await pool.snapshots.create('/parent', 'gold');
  await pool.syncToBackend();
  const clones: number[] = [];
  for (let i = 0; i < runs; i++) clones.push(await timed(() => pool.snapshots.clone('/parent', 'gold', `/c${i}`)));

  const cloneMBs: number[] = [];
  const parentMBs: number[] = [];
  for (let i = 0; i < Math.min(runs, 3); i++) {
    pool = await rebuild(pool);
    cloneMBs.push(await readAll(pool, `/c${i}`));
    pool = await rebuild(pool);
    parentMBs.push(await readAll(pool, '/parent'));
  }
  await pool.close();

  const out = {
    sizeMiB: size / MiB, dirtyMiB: dirty / MiB, runs, loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
    snapshotCleanMs: Number(median(clean).toFixed(2)), snapshotDirtyMs: Number(median(withDirty).toFixed(2)),
    cloneMs: Number(median(clones).toFixed(2)),
    coldReadCloneMBs: Number(median(cloneMBs).toFixed(1)), coldReadParentMBs: Number(median(parentMBs).toFixed(1)),
    cloneToParent: Number((median(cloneMBs) / median(parentMBs)).toFixed(2)),
  };
  console.log(`snapshot, nothing new          ${out.snapshotCleanMs} ms (median of ${runs})`);
  console.log(`snapshot, ${out.dirtyMiB} MiB new            ${out.snapshotDirtyMs} ms`);
  console.log(`clone of a ${out.sizeMiB} MiB vDisk       ${out.cloneMs} ms`);
  console.log(`cold 1 MiB sequential read     clone ${out.coldReadCloneMBs} MB/s, parent ${out.coldReadParentMBs} MB/s, ratio ${out.cloneToParent}`);
  console.log(`load average ${out.loadavg.join(' ')} (figures on a busy machine are noise)${runs < 3 ? '; runs < 3: a smoke test' : ''}`);
  console.log(JSON.stringify(out));
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
