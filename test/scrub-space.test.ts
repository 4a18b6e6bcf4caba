/**
 * Space over time (issue 12): one vDisk under random overwrites, an automatic snapshot every simulated
 * hour, retention daily at 00:30 and a scrub nightly at 02:00, for simulated days on an injected clock
 * (SnapshotScheduler's; 20 days by default, VPOOLFS_SPACE_DAYS=30 for the month). After each night's scrub the backend bytes of the vDisk stay ≤ 1.5 × the bytes
 * that the live vDisk and its kept snapshots reference (both printed); the same run without scrubbing
 * shows the growth. Every snapshot and the head still read as the reference at the end.
 * VPOOLFS_SEED replays; VPOOLFS_SPACE_DAYS changes the length.
 */
import test from 'ava';
import { poolEnv } from './helpers/vpool.js';
import { pattern, RefDisk, rng } from './helpers/ref-disk.js';
import { bytesUnder, pointData, sameAsRef } from './helpers/scrub-check.js';
import { SnapshotScheduler } from '../volume/snapshots/snapshot-schedule.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { chainItems, readItem } from '../volume/lineage/chain.js';
import { applyTo, type DiskState } from '../volume/lineage/clone-base.js';
import { ClusterMap } from '../volume/datapath/formats/cluster-map.js';
import { SLOT_SIZE } from '../volume/datapath/formats/sco-format.js';
import type { VPool } from '../volume/types.js';
import { realCacheIo, type CacheIo } from '../volume/datapath/write-cache/cache-io.js';
import { runSeed } from './helpers/seed.js';

const CS = 4096;
const HOUR = 3_600_000;
const CLUSTERS = 1024; // a 4 MiB vDisk
const WRITES_PER_HOUR = 12;

/** Bytes of the distinct slots the head and every kept snapshot reference (one replay of the chain). */
async function referencedBytes(pool: VPool, p: string): Promise<number> {
  const v = pool.vdisk(p) as VDiskImpl;
  const slots = new Set<number>();
  const s: DiskState = { map: new ClusterMap(), size: 0, scoCounts: new Map() };
  const points = v.docs.doc.snapshots.map((x) => x.tlog).sort((a, b) => a - b);
  const mark = (): void => {
    for (const [, loc] of s.map.entries()) slots.add(loc.sco * 65536 + loc.slot);
  };
  for (const item of await chainItems(v.ctx.backend, v.id, v.docs.doc)) {
    while (points.length > 0 && points[0] < item.end) (points.shift(), mark());
    for (const r of await readItem(v.ctx.backend, v.id, item)) applyTo(s, r);
  }
  mark();
  return slots.size * SLOT_SIZE;
}

async function run(t: import('ava').ExecutionContext, seed: number, scrub: boolean, days: number): Promise<{ backend: number[]; referenced: number[] }> {
  const r = rng(seed);
  // in-memory metadata and backend, write-cache syncs skipped: a month of hourly snapshots is thousands of
  // fsyncs otherwise, and this test is about space, not durability
  const io: CacheIo = { ...realCacheIo, fdatasync: async () => undefined, fsyncDir: async () => undefined };
  const env = poolEnv(t, { scoClusters: 32, tlogScos: 4, metadata: 'memory', cacheIo: io });
  const pool = await env.open({ backendUrl: `mem://scrub-space-${seed}-${scrub ? 'scrubbed' : 'not'}` });
  await pool.createFile('/d', 0o644, 0, 0, CLUSTERS * CS);
  const ref = new RefDisk();
  ref.resize(CLUSTERS * CS);
  const snapRefs = new Map<string, RefDisk>();
  let now = Date.UTC(2026, 0, 5, 0, 0, 0); // a Monday
  const sched = new SnapshotScheduler(pool, () => now);
  const v = pool.vdisk('/d') as VDiskImpl;
  const out = { backend: [] as number[], referenced: [] as number[] };
  for (let h = 0; h < days * 24; h++) {
    for (let w = 0; w < WRITES_PER_HOUR; w++) {
      // a hot quarter takes most of the writes: the skew of a real disk
      const n = 1 + Math.floor(r() * 4);
      const a = r() < 0.7 ? Math.floor(r() * (CLUSTERS / 4 - n)) : Math.floor(r() * (CLUSTERS - n));
      const data = pattern(seed, h * 100 + w, n * CS);
      await v.write(a * CS, data);
      ref.write(a * CS, data);
    }
    now += HOUR; // hh:00
    await sched.takeAutomatic();
    const name = pool.snapshots.list('/d').at(-1)!.name;
    snapRefs.set(name, ref.clone());
    const hour = new Date(now).getUTCHours();
    if (hour === 0) {
      now += HOUR / 2; // 00:30
      await sched.applyRetention();
      now -= HOUR / 2;
    }
    if (hour === 2) {
      await v.syncToBackend();
      if (scrub) t.is((await sched.scrubAll()).failed, 0, 'the nightly scrub ran');
      await v.syncToBackend();
      const b = await bytesUnder(v.ctx.backend, `vdisks/${v.id}/`);
      const l = await referencedBytes(pool, '/d');
      out.backend.push(b);
      out.referenced.push(l);
    }
  }
  // every kept snapshot and the head read as the reference
  await v.syncToBackend();
  for (const s of v.docs.doc.snapshots) {
    const want = snapRefs.get(s.name)!;
    t.true(sameAsRef(await pointData(v.ctx.backend, v.id, v.docs.doc, s.tlog), want), `${scrub ? 'with' : 'without'} scrubbing: snapshot ${s.name} reads as the reference`);
  }
  t.true((await v.read(0, CLUSTERS * CS)).equals(ref.read(0, CLUSTERS * CS)), 'the head reads as the reference');
  await env.close(pool);
  return out;
}

test('simulated days (20, VPOOLFS_SPACE_DAYS) of overwrites with hourly snapshots and daily retention: scrubbing keeps the backend ≤ 1.5 × what is referenced', async (t) => {
  const seed = runSeed();
  const days = Number(process.env.VPOOLFS_SPACE_DAYS ?? 20); // 30 (the month) takes ~2 min on a loaded 2-core machine
  t.log(`seed ${seed} (VPOOLFS_SEED=${seed} replays this run), ${days} days`);
  const withScrub = await run(t, seed, true, days);
  const without = await run(t, seed, false, days);
  const mib = (n: number): string => (n / 2 ** 20).toFixed(2);
  for (let d = 0; d < withScrub.backend.length; d++) {
    t.log(`day ${d + 1}: scrubbed backend ${mib(withScrub.backend[d])} MiB / referenced ${mib(withScrub.referenced[d])} MiB = ${(withScrub.backend[d] / withScrub.referenced[d]).toFixed(2)}; ` +
      `unscrubbed backend ${mib(without.backend[d])} MiB / referenced ${mib(without.referenced[d])} MiB = ${(without.backend[d] / without.referenced[d]).toFixed(2)}`);
  }
  for (let d = 0; d < withScrub.backend.length; d++) {
    t.true(withScrub.backend[d] <= 1.5 * withScrub.referenced[d], `day ${d + 1}: ${withScrub.backend[d]} backend bytes ≤ 1.5 × ${withScrub.referenced[d]} referenced`);
  }
  const last = without.backend.length - 1;
  t.true(without.backend[last] > 2 * without.referenced[last], 'without scrubbing the backend grows past twice what is referenced');
  t.true(without.backend[last] > 1.5 * withScrub.backend[last], 'scrubbing keeps the backend well below the unscrubbed one');
});
