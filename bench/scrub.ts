/**
 * Scrubbing at the volume layer (issue 12, `npm run bench:scrub`), in one run:
 *
 *   throughput    a vDisk of --size written in full, then random 4–64 KiB overwrites of --churn × its size
 *                 with a snapshot every --snap MiB, all but the last snapshot deleted; one scrub: MB/s read
 *                 and written by the job, bytes freed, wall time
 *   address order a cold 1 MiB sequential read of the whole vDisk (state directory removed: both caches
 *                 empty) after the overwrites, before the scrub and after it; the ratio after / before is
 *                 printed (the scrub rewrites live clusters in address order within each segment)
 *
 * The backend is file:// under --dir (default the OS temp directory).
 *
 *   node dist/bench/scrub.js [--size 128] [--churn 2] [--snap 32] [--dir BASE]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import type { VPoolOptions } from '../volume/vpool-options.js';
import { setLogLevel } from '../util/log.js';

const MiB = 2 ** 20;
const { values: args } = parseArgs({
  options: { size: { type: 'string', default: '128' }, churn: { type: 'string', default: '2' }, snap: { type: 'string', default: '32' }, dir: { type: 'string' } },
});
const size = Number.parseInt(String(args.size), 10) * MiB;
const churn = Number(args.churn);
const snapEvery = Number.parseInt(String(args.snap), 10) * MiB;
setLogLevel('warn');

const root = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'vpoolfs-bench-scrub-'));
const opts: VPoolOptions = { name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`, scoMaxAgeMs: 3_600_000 };

/** A cold sequential read of the whole vDisk (after a rebuild from the backend): MB/s. */
async function coldRead(): Promise<number> {
  fs.rmSync(opts.stateDir, { recursive: true, force: true });
  const pool = await openVPool(opts);
  try {
    const v = pool.vdisk('/d');
    const t0 = performance.now();
    for (let pos = 0; pos < v.size; pos += MiB) await v.read(pos, MiB);
    return v.size / MiB / ((performance.now() - t0) / 1000);
  } finally {
    await pool.close();
  }
}

async function main(): Promise<void> {
  let pool: VPool = await openVPool(opts);
  await pool.createFile('/d', 0o644, 0, 0, size);
  const v = pool.vdisk('/d');
  const block = randomBytes(MiB);
  for (let pos = 0; pos < size; pos += MiB) await v.write(pos, block);
  let written = 0;
  let nextSnap = snapEvery;
  let n = 0;
  while (written < churn * size) {
    const len = 4096 * (1 + Math.floor(Math.random() * 16));
    const off = Math.floor(Math.random() * ((size - len) / 4096)) * 4096;
    await v.write(off, randomBytes(len));
    written += len;
    if (written >= nextSnap) {
      await pool.snapshots.create('/d', `s${n++}`);
      nextSnap += snapEvery;
    }
  }
  for (const s of pool.snapshots.list('/d').slice(0, -1)) await pool.snapshots.remove('/d', s.name);
  await pool.close();
  const before = await coldRead();
  pool = await openVPool(opts);
  const t0 = performance.now();
  const r = await pool.scrub.scrub('/d');
  const secs = (performance.now() - t0) / 1000;
  await pool.close();
  const after = await coldRead();
  fs.rmSync(root, { recursive: true, force: true });
  const mb = (x: number): string => (x / MiB).toFixed(1);
  console.log(`vDisk ${mb(size)} MiB, ${mb(written)} MiB of random overwrites, ${n} snapshots (${n - 1} deleted)`);
  console.log(`scrub: ${secs.toFixed(2)} s; read ${mb(r.stats.bytesRead)} MiB (${(r.stats.bytesRead / MiB / secs).toFixed(1)} MB/s), ` +
    `wrote ${mb(r.stats.bytesWritten)} MiB (${(r.stats.bytesWritten / MiB / secs).toFixed(1)} MB/s), freed ${mb(r.swept.bytes)} MiB, ${r.relocated} clusters moved`);
  console.log(`cold sequential read: ${before.toFixed(1)} MB/s before the scrub, ${after.toFixed(1)} MB/s after (ratio ${(after / before).toFixed(2)})`);
}

await main();
