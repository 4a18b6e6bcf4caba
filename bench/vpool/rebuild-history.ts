/**
 * `node dist/bench/vpool/rebuild-history.js`: does the rebuild of a vDisk from a map checkpoint grow with the
 * vDisk's history? In one process (no registry, no lease): for each N of --tlogs, a vDisk gets N TLogs of one
 * 32 KiB SCO each going round a 16 MiB working set (512 places) — past 512 TLogs its state (map, live SCOs,
 * the checkpoint's size) stays the same and only the history grows —, a clean stop writes a checkpoint,
 * then 64 more TLogs come without one. Then the vPool is opened on an empty state directory --runs times
 * (after a warm-up) with checkpoints: the time to open it, the vDisk rebuilt from the checkpoint and the 64
 * TLogs after it. With --keep DIR the backends are built once under DIR and reused by later runs (so that two
 * builds of the code measure the very same backends). Printed, not a test.
 *
 *   node dist/bench/vpool/rebuild-history.js [--tlogs 1000,10000] [--runs 5] [--keep DIR]
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
  options: { tlogs: { type: 'string', default: '1000,10000' }, runs: { type: 'string', default: '5' }, keep: { type: 'string' } },
});
const counts = String(args.tlogs).split(',').map((s) => Number.parseInt(s, 10)).filter((n) => n > 64);
const runs = Number.parseInt(String(args.runs), 10);
const BEHIND = 64;
const PLACES = 512;
const CLUSTERS = 8;
setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'warn');

const SHAPE = { clusters: CLUSTERS, places: PLACES, spread: false };

console.log(`rebuild of one vDisk from its checkpoint (64 TLogs behind), file:// backend, working set of 16 MiB, medians of ${runs}`);
console.log(`${'TLogs'.padStart(6)} | ${'open (ms)'.padStart(10)} | runs (ms)`);
for (const n of counts) {
  const root = args.keep !== undefined ? path.join(args.keep, `h${n}`) : fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bench-history-'));
  const base: VPoolOptions = { name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`, scoClusters: CLUSTERS, tlogScos: 1, scoMaxAgeMs: 3_600_000 };
  try {
    if (!fs.existsSync(path.join(root, 'built'))) {
      fs.rmSync(root, { recursive: true, force: true });
      fs.mkdirSync(root, { recursive: true });
      await buildHistory(base, '/d', PLACES * CLUSTERS * 4096, n, BEHIND, SHAPE);
      fs.writeFileSync(path.join(root, 'built'), '');
    }
    const times: number[] = [];
    for (let r = -1; r < runs; r++) { // run -1 warms up (JIT, page cache), not counted
      fs.rmSync(base.stateDir, { recursive: true, force: true });
      const t0 = performance.now();
      const pool = await openVPool({ ...base, checkpointEveryTlogs: 0, force: true });
      if (r >= 0) times.push(performance.now() - t0);
      await pool.close();
    }
    console.log(`${String(n).padStart(6)} | ${median(times).toFixed(0).padStart(10)} | ${times.map((t) => t.toFixed(0)).join(' ')}`);
  } finally {
    if (args.keep === undefined) fs.rmSync(root, { recursive: true, force: true });
  }
}
