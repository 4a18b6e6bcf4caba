/**
 * `npm run bench:volume`: the volume layer in-process (issue 2, "Speed"), no FUSE. In the same run:
 *
 *   vdisk        VDisk.write(offset, buf) / VDisk.read(offset, len) on a vDisk of a vPool opened with
 *                openVPool({ backendUrl: 'file://<tmp>', stateDir: <tmp> }), each call awaited (queue depth 1)
 *   plain sync   a plain file in the same temp directory, fs.writeSync(fd, buf, 0, len, pos) /
 *                fs.readSync(fd, buf, 0, len, pos): the cost a synchronous writer pays for the same
 *                promise (the bytes are in the kernel: they survive a kill of the process; no fsync)
 *   plain async  the same file through FileHandle.write/read (fs/promises), awaited one at a time: the
 *                cost of one trip through libuv's thread pool, which any async Node implementation pays
 *
 * Workloads: 1 MiB sequential write of the whole file, 4 KiB random write (time-based), 1 MiB sequential
 * read of the whole file, 4 KiB random read (time-based). Medians of --runs runs (default 3); the ratio
 * printed is vdisk / plain sync. Then the memory of the cluster map of a fully written 10 GiB vDisk:
 * ClusterMap.memoryBytes() and the measured heapUsed + arrayBuffers delta after filling 2,621,440 entries.
 *
 * Then reads after overwrites (benchReadAfter): a 1 MiB sequential read after random 4 KiB overwrites of the
 * whole vDisk next to the same read after sequential writes, warm and with the write cache evicted.
 *
 *   node dist/bench/vpool/volume.js [--size 256M] [--seconds 3] [--runs 3] [--dir BASE] [--skip-io] [--skip-read-after]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { randomBytes, randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ClusterMap } from '../../volume/datapath/formats/cluster-map.js';
import type { VPool } from '../../volume/types.js';
import { openVPool } from '../../volume/vpool.js';
import { setLogLevel } from '../../util/log.js';
import { median } from '../shared/fio.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** One side of the comparison: positional write/read, awaited. */
interface Io {
  write(pos: number, buf: Buffer): Promise<void> | void;
  read(pos: number, len: number): Promise<unknown> | unknown;
}

interface Workload { name: string; unit: 'IOPS' | 'MB/s'; run(io: Io, size: number, seconds: number): Promise<number> }

const pool = Array.from({ length: 64 }, () => randomBytes(4 * KiB));
const big = randomBytes(MiB);

async function seq(io: Io, size: number, write: boolean): Promise<number> {
  const t0 = performance.now();
  for (let pos = 0; pos < size; pos += MiB) {
    if (write) await io.write(pos, big);
    else await io.read(pos, MiB);
  }
  return size / 1e6 / ((performance.now() - t0) / 1000);
}

async function rand(io: Io, size: number, seconds: number, write: boolean): Promise<number> {
  const clusters = size / (4 * KiB);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  for (;;) {
    // Check the clock every 64 operations: cheap, and still within a few ms of the deadline.
    for (let k = 0; k < 64; k++, n++) {
      const pos = randomInt(clusters) * 4 * KiB;
      if (write) await io.write(pos, pool[n & 63]!);
      else await io.read(pos, 4 * KiB);
    }
    const now = performance.now();
    if (now >= end) return n / ((now - t0) / 1000);
  }
}

const WORKLOADS: Workload[] = [
  { name: '1 MiB sequential write', unit: 'MB/s', run: (io, size) => seq(io, size, true) },
  { name: '4 KiB random write', unit: 'IOPS', run: (io, size, s) => rand(io, size, s, true) },
  { name: '1 MiB sequential read', unit: 'MB/s', run: (io, size) => seq(io, size, false) },
  { name: '4 KiB random read', unit: 'IOPS', run: (io, size, s) => rand(io, size, s, false) },
];

function plainSync(file: string): Io & { close(): void } {
  const fd = fs.openSync(file, 'w+');
  const rbuf = Buffer.alloc(MiB);
  return {
    write: (pos, buf) => { fs.writeSync(fd, buf, 0, buf.length, pos); },
    read: (pos, len) => fs.readSync(fd, rbuf, 0, len, pos),
    close: () => fs.closeSync(fd),
  };
}

async function plainAsync(file: string): Promise<Io & { close(): Promise<void> }> {
  const fh = await fs.promises.open(file, 'w+');
  const rbuf = Buffer.alloc(MiB);
  return {
    write: async (pos, buf) => { await fh.write(buf, 0, buf.length, pos); },
    read: (pos, len) => fh.read(rbuf, 0, len, pos),
    close: () => fh.close(),
  };
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s} (e.g. 256M)`);
  const n = Number(m[1]) * ({ '': 1, K: KiB, M: MiB, G: 1024 * MiB }[m[2]!.toUpperCase()] ?? 1);
  if (n < MiB || n % MiB) throw new Error(`size must be a whole number of MiB, got ${s}`);
  return n;
}

async function benchIo(size: number, seconds: number, runs: number, base: string): Promise<void> {
  const root = fs.mkdtempSync(path.join(base, 'vpoolfs-volbench-'));
  const sides = ['plain sync', 'plain async', 'vdisk'] as const;
  const res = new Map<string, Record<string, number[]>>(WORKLOADS.map((w) => [w.name, { 'plain sync': [], 'plain async': [], vdisk: [] }]));
  let vpool: VPool | undefined;
  try {
    vpool = await openVPool({ name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}` });
    for (let run = 1; run <= runs; run++) {
      const ps = plainSync(path.join(root, `plain-sync-${run}`));
      const pa = await plainAsync(path.join(root, `plain-async-${run}`));
      let vd: Io | undefined;
      if (vpool) {
        await vpool.createFile(`/disk-${run}`, 0o644, 0, 0, size);
        const d = vpool.vdisk(`/disk-${run}`);
        vd = { write: (pos, buf) => d.write(pos, buf), read: (pos, len) => d.read(pos, len) };
      }
      try {
        for (const w of WORKLOADS) {
          const ios: Array<[(typeof sides)[number], Io | undefined]> = [['plain sync', ps], ['plain async', pa], ['vdisk', vd]];
          for (const [side, io] of ios) {
            if (!io) continue;
            const v = await w.run(io, size, seconds);
            res.get(w.name)![side]!.push(v);
            process.stderr.write(`bench:volume: run ${run}/${runs} ${w.name.padEnd(23)} ${side.padEnd(11)} ${v.toFixed(0)} ${w.unit}\n`);
          }
        }
      } finally {
        ps.close();
        await pa.close();
        fs.rmSync(path.join(root, `plain-sync-${run}`), { force: true });
        fs.rmSync(path.join(root, `plain-async-${run}`), { force: true });
        if (vpool) await vpool.unlink(`/disk-${run}`);
      }
    }
  } finally {
    if (vpool) await vpool.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const rows = [['workload', 'unit', ...sides, 'vdisk/plain sync', 'vdisk/plain async']];
  for (const w of WORKLOADS) {
    const r = res.get(w.name)!;
    const m = sides.map((s) => (r[s]!.length ? median(r[s]!) : NaN));
    const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? (a / b).toFixed(2) : '-');
    rows.push([w.name, w.unit, ...m.map((x) => (Number.isFinite(x) ? x.toFixed(0) : '-')), ratio(m[2]!, m[0]!), ratio(m[2]!, m[1]!)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  process.stdout.write(`\nvolume layer, in-process, queue depth 1, ${size / MiB} MiB file, medians of ${runs} runs; `
    + `load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (${os.cpus().length} CPUs)\n`);
  for (const [i, r] of rows.entries()) {
    process.stdout.write(`${r.map((c, j) => (j < 2 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  ')}\n`);
    if (i === 0) process.stdout.write(`${widths.map((n) => '-'.repeat(n)).join('  ')}\n`);
  }
}

/**
 * Reads after overwrites (issue 10): the same 1 MiB sequential read of a whole vDisk (a) written sequentially
 * in 1 MiB writes, (b) written sequentially then overwritten cluster by cluster in a random order (4 KiB
 * writes, every cluster once), so that each 1 MiB read gathers ~256 single slots from every SCO. Measured
 * warm (the write cache: SCO files in the page cache), then with the write cache evicted (both vDisks
 * shipped, every SCO evicted, the read cache emptied: cold reads from the backend through the read cache),
 * then once more (the read cache warm). The vPool's read cache is 2 × size + 64 MiB here, so the figures are
 * about the read path, not about the cache being too small. Prints medians and the ratio (b)/(a).
 */
async function benchReadAfter(size: number, runs: number, base: string): Promise<void> {
  const root = fs.mkdtempSync(path.join(base, 'vpoolfs-readbench-'));
  const readCacheBytes = 2 * size + 64 * MiB;
  const cases = ['write cache', 'evicted, cold', 'evicted, read cache warm'] as const;
  const res = new Map<string, { seq: number[]; rnd: number[] }>(cases.map((c) => [c, { seq: [], rnd: [] }]));
  const vpool = await openVPool({
    name: 'bench', stateDir: path.join(root, 'state'), backendUrl: `file://${path.join(root, 'backend')}`,
    readCacheBytes, writeCacheBytes: 4 * size + 64 * MiB,
  });
  const note = (run: number, what: string, v: number): void => {
    process.stderr.write(`bench:volume: run ${run}/${runs} read after ${what.padEnd(44)} ${v.toFixed(0)} MB/s\n`);
  };
  const readAll = async (d: { read(o: number, l: number): Promise<Buffer> }): Promise<number> => {
    const t0 = performance.now();
    for (let pos = 0; pos < size; pos += MiB) {
      const b = await d.read(pos, MiB);
      if (b.length !== MiB) throw new Error(`short read at ${pos}: ${b.length}`);
    }
    return size / 1e6 / ((performance.now() - t0) / 1000);
  };
  try {
    for (let run = 1; run <= runs; run++) {
      const seqPath = `/rseq-${run}`;
      const rndPath = `/rrnd-${run}`;
      await vpool.createFile(seqPath, 0o644, 0, 0, size);
      await vpool.createFile(rndPath, 0o644, 0, 0, size);
      const a = vpool.vdisk(seqPath);
      const b = vpool.vdisk(rndPath);
      for (let pos = 0; pos < size; pos += MiB) {
        await a.write(pos, big);
        await b.write(pos, big);
      }
      // every cluster of (b) once, in a random order (Fisher-Yates)
      const order = Array.from({ length: size / (4 * KiB) }, (_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const [n, c] of order.entries()) await b.write(c * 4 * KiB, pool[n & 63]!);
      // ship both first (nothing is evicted: the write cache holds it all) so that no upload runs in the
      // background of the reads
      await a.syncToBackend();
      await b.syncToBackend();
      const warm = res.get('write cache')!;
      warm.seq.push(await readAll(a));
      note(run, 'sequential writes (write cache)', warm.seq.at(-1)!);
      warm.rnd.push(await readAll(b));
      note(run, 'random 4 KiB overwrites (write cache)', warm.rnd.at(-1)!);
      // ship both, then evict every SCO: a tiny limit and one write elsewhere make the space evict all that is
      // in the backend; empty the read cache the same way
      await a.syncToBackend();
      await b.syncToBackend();
      const limits = vpool.cacheStats();
      vpool.setCacheLimits({ writeCacheBytes: 1, readCacheBytes: 0 });
      await vpool.createFile(`/evictor-${run}`, 0o644, 0, 0, 4 * KiB);
      await vpool.vdisk(`/evictor-${run}`).write(0, pool[0]!);
      vpool.setCacheLimits({ writeCacheBytes: limits.writeCacheLimit, readCacheBytes: readCacheBytes });
      for (const d of [a, b]) {
        const dir = path.join(root, 'state', 'wc', d.info().id, 'sco');
        for (const t0 = Date.now(); fs.readdirSync(dir).length > 0;) {
          if (Date.now() - t0 > 30_000) throw new Error(`${dir} still holds SCOs after the eviction`);
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const cold = res.get('evicted, cold')!;
      cold.seq.push(await readAll(a));
      note(run, 'sequential writes (evicted, cold)', cold.seq.at(-1)!);
      vpool.setCacheLimits({ readCacheBytes: 0 }); // (a)'s pieces out: (b) starts cold too
      vpool.setCacheLimits({ readCacheBytes });
      cold.rnd.push(await readAll(b));
      note(run, 'random 4 KiB overwrites (evicted, cold)', cold.rnd.at(-1)!);
      // the read cache holds (b); read (a) once untimed so that it holds both, then time each
      await readAll(a);
      const warmRc = res.get('evicted, read cache warm')!;
      warmRc.seq.push(await readAll(a));
      note(run, 'sequential writes (evicted, read cache warm)', warmRc.seq.at(-1)!);
      warmRc.rnd.push(await readAll(b));
      note(run, 'random 4 KiB overwrites (evicted, read cache warm)', warmRc.rnd.at(-1)!);
      await vpool.unlink(seqPath);
      await vpool.unlink(rndPath);
      await vpool.unlink(`/evictor-${run}`);
    }
  } finally {
    await vpool.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
  process.stdout.write(`\n1 MiB sequential read of a whole ${size / MiB} MiB vDisk, in-process, queue depth 1, medians of ${runs} runs, MB/s; `
    + `load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
  const rows = [['read from', 'after sequential writes', 'after random 4 KiB overwrites', 'ratio']];
  for (const c of cases) {
    const r = res.get(c)!;
    const s = median(r.seq);
    const o = median(r.rnd);
    rows.push([c, s.toFixed(0), o.toFixed(0), (o / s).toFixed(2)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const [i, r] of rows.entries()) {
    process.stdout.write(`${r.map((c, j) => (j < 1 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  ')}\n`);
    if (i === 0) process.stdout.write(`${widths.map((n) => '-'.repeat(n)).join('  ')}\n`);
  }
}

/** The cluster map of a fully written 10 GiB vDisk: one entry per 4 KiB cluster. */
function benchClusterMap(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const clusters = (10 * 1024 * MiB) / (4 * KiB);
  const used = (): number => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
  const before = used();
  const map = new ClusterMap();
  for (let a = 0; a < clusters; a++) map.set(a, 1 + Math.floor(a / 1024), a % 1024);
  const after = used();
  const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
  process.stdout.write(`\ncluster map of a fully written 10 GiB vDisk (${clusters.toLocaleString('en')} clusters of 4 KiB):\n`
    + `  ClusterMap.memoryBytes()         ${mib(map.memoryBytes())}\n`
    + `  heapUsed + arrayBuffers delta    ${mib(after - before)}  (${((after - before) / clusters).toFixed(2)} bytes a cluster)\n`);
  if (map.mappedClusters !== clusters) throw new Error(`map holds ${map.mappedClusters} clusters, expected ${clusters}`);
}

async function main(): Promise<void> {
  // The vPool's info lines would drown the figures; VPOOLFS_LOG_LEVEL still wins.
  setLogLevel(process.env.VPOOLFS_LOG_LEVEL ?? 'warn');
  const { values } = parseArgs({ options: {
    size: { type: 'string' }, seconds: { type: 'string' }, runs: { type: 'string' }, dir: { type: 'string' },
    'skip-io': { type: 'boolean' }, 'skip-read-after': { type: 'boolean' },
  } });
  const env = (k: string): string | undefined => process.env[`VPOOLFS_BENCH_${k}`];
  const size = parseSize(values.size ?? env('SIZE') ?? '256M');
  const seconds = Number(values.seconds ?? env('SECONDS') ?? 3);
  const runs = Number(values.runs ?? env('RUNS') ?? 3);
  if (!(seconds > 0) || !Number.isInteger(runs) || runs < 1) throw new Error('--seconds must be > 0 and --runs an integer >= 1');
  if (!values['skip-io']) await benchIo(size, seconds, runs, values.dir ?? env('DIR') ?? os.tmpdir());
  if (!values['skip-read-after']) await benchReadAfter(size, runs, values.dir ?? env('DIR') ?? os.tmpdir());
  benchClusterMap();
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:volume: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
