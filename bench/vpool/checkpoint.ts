/**
 * `npm run bench:checkpoint`: the rebuild of a vDisk from the backend (a takeover, a lost state disk) with
 * and without map checkpoints (volume/lineage/map-checkpoint.ts), for vDisks with a history of --tlogs TLogs.
 * For each count N: a 1 GiB vDisk gets N TLogs (each one full SCO of 8 clusters written at a random place),
 * a clean stop writes a checkpoint at N − 64, then 64 more TLogs come without one (the checkpoint is behind,
 * as it is between two of them). Then, state directory removed each time, the vPool is opened (the time to
 * open it, the vDisk rebuilt) without checkpoints — every TLog replayed — and with them — the checkpoint
 * loaded, 64 TLogs replayed — and both read the same. Medians of --runs after one warm-up. Printed, not a test.
 *
 *   node dist/bench/vpool/checkpoint.js [--tlogs 100,1000,5000] [--runs 3] [--dir BASE]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openVPool } from '../../volume/vpool.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';
import { setLogLevel } from '../../util/log.js';
import { median } from '../shared/fio.js';
import { buildHistory } from '../shared/tlog-history.js';

const { values: args } = parseArgs({
  options: { tlogs: { type: 'string', default: '100,1000,5000' }, runs: { type: 'string', default: '3' }, dir: { type: 'string' } },
});
const counts = String(args.tlogs).split(',').map((s) => Number.parseInt(s, 10)).filter((n) => n > 64);
const runs = Number.parseInt(String(args.runs), 10);
const BEHIND = 64;
const SIZE = 2 ** 30;
const CLUSTERS = 8;
setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'warn');

const SHAPE = { clusters: CLUSTERS, places: SIZE / (CLUSTERS * 4096), spread: true };

console.log(`rebuild of one vDisk from a file:// backend, medians of ${runs}; the checkpoint is ${BEHIND} TLogs behind the end`);
console.log(`${'TLogs'.padStart(6)} | ${'without (ms)'.padStart(13)} | ${'with (ms)'.padStart(10)} | ${'ratio'.padStart(6)} | checkpoint`);
for (const n of counts) {
  const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-ckpt-'));
  const base: VPoolOptions = { name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`, scoClusters: CLUSTERS, tlogScos: 1, scoMaxAgeMs: 3_600_000 };
  try {
    await buildHistory(base, '/d', SIZE, n, BEHIND, SHAPE);
    const ckpt = fs.readdirSync(path.join(root, 'backend', 'vdisks', fs.readdirSync(path.join(root, 'backend', 'vdisks'))[0], 'checkpoint'));
    const size = ckpt.map((k) => fs.statSync(path.join(root, 'backend', 'vdisks', fs.readdirSync(path.join(root, 'backend', 'vdisks'))[0], 'checkpoint', k)).size);
    const times: Record<'with' | 'without', number[]> = { with: [], without: [] };
    const heads: Record<string, string> = {};
    for (let r = -1; r < runs; r++) { // run -1 warms up (JIT, page cache), not counted
      for (const mode of ['without', 'with'] as const) {
        fs.rmSync(base.stateDir, { recursive: true, force: true });
        const t0 = performance.now();
        const pool = await openVPool({ ...base, checkpointEveryTlogs: 0, loadCheckpoints: mode === 'with' });
        if (r >= 0) times[mode].push(performance.now() - t0);
        const v = pool.vdisk('/d');
        heads[mode] = (await v.read(0, 4 * 2 ** 20)).toString('hex', 0, 64) + v.size;
        await pool.close();
      }
      if (heads.with !== heads.without) throw new Error('the rebuilds with and without checkpoint read differently');
    }
    const w = median(times.without);
    const c = median(times.with);
    console.log(`${String(n).padStart(6)} | ${w.toFixed(0).padStart(13)} | ${c.toFixed(0).padStart(10)} | ${(w / c).toFixed(1).padStart(6)} | ${ckpt.length} object(s), ${size.map((s) => `${(s / 1024).toFixed(0)} KiB`).join(', ')}`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
