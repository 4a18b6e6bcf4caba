/**
 * Concurrent writers against a real mount (both engines; on the kernel engine the WRITEs' cluster crcs are
 * computed in the reader threads, fuse/kernel/write-crcs.ts, and the WRITEs of one loop turn reach the
 * volume together, volume/vdisk/write-gather.ts), model-based. Each round, three writer
 * processes (helpers/concurrent-writer.ts) write O_DIRECT, three requests in flight each, mostly 4 KiB
 * aligned, some several clusters, some 512-byte pieces (read-modify-write), half of them in a hot region
 * where they overlap. Every sector written names its writer and write, so the image read after the round is
 * checked sector by sector: a sector may hold the value of any write that covered it unless an acknowledged
 * write covering it started after that one was acknowledged (overlapping concurrent writes: either), or its
 * value before the round if no acknowledged write covered it. Between rounds: snapshots, rollbacks, resizes
 * (shrink, grow, unaligned), punched holes (fuse-native, which has no fallocate: zeros written); a 2 MiB write cache with small SCOs, so SCOs are uploaded and
 * evicted all along. Some rounds kill -9 the daemon under the writers and mount again: every acknowledged
 * write is there (the same check, unacknowledged writes allowed either way), and a second kill -9 with
 * nothing in flight changes nothing (the image after remount is the image before). On the kernel engine the
 * session's stats must show slot headers built with crcs from the readers and loop turns that gathered
 * several WRITEs (the test fails if either path is never taken). Seeded: the seed is logged, VPOOLFS_SEED=<n> replays the operations (the interleaving is
 * the machine's); VPOOLFS_CONCURRENT_WRITE_ROUNDS=<n> runs more rounds.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { SECTOR, sectorClaim } from './helpers/concurrent-writer.js';
import { freshLayout, fuseTest, logEntries, type MountHandle, q, sh, startMount } from './helpers/mount.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();
const MiB = 2 ** 20;
const ROUNDS = Number(process.env.VPOOLFS_CONCURRENT_WRITE_ROUNDS ?? 8);
const WRITERS = 3;
const COUNT = 120;
const INFLIGHT = 3;
const WRITER_JS = fileURLToPath(new URL('./helpers/concurrent-writer.js', import.meta.url));

/** One write of a writer, as its log says: begun at t0, acknowledged at t1 (Infinity: never). */
interface Done {
  writer: number;
  seq: number;
  off: number;
  len: number;
  t0: number;
  t1: number;
}

/** Runs one writer process; resolves with its writes (begun ones, acknowledged or not) when it exits. */
function runWriter(file: string, seed: number, writer: number, size: number, onAck: () => void): Promise<Done[]> {
  const child = spawn(process.execPath, [WRITER_JS, file, String(seed), String(writer), String(COUNT), String(size), String(INFLIGHT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const writes = new Map<number, Done>();
  let rest = '';
  child.stdout.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop()!;
    for (const l of lines) {
      const f = l.split(' ');
      if (f[0] === 'b') writes.set(Number(f[1]), { writer, seq: Number(f[1]), off: Number(f[2]), len: Number(f[3]), t0: Number(f[4]), t1: Infinity });
      else if (f[0] === 'e') {
        writes.get(Number(f[1]))!.t1 = Number(f[2]);
        onAck();
      }
    }
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve([...writes.values()]) : reject(new Error(`writer ${writer} exited ${code}: ${err}`)))));
}

/**
 * Checks `image` against the writes of a round over `base` (the image before it, `size` bytes now).
 * Returns the first failures (at most 5).
 */
function check(image: Buffer, base: Buffer, size: number, writes: Done[]): string[] {
  const failures: string[] = [];
  if (image.length !== size) return [`the image is ${image.length} bytes, ${size} expected`];
  // the writes covering each sector
  const covering = new Map<number, Done[]>();
  for (const w of writes) {
    for (let s = w.off / SECTOR; s < (w.off + w.len) / SECTOR; s++) {
      let l = covering.get(s);
      if (l === undefined) covering.set(s, (l = []));
      l.push(w);
    }
  }
  for (let s = 0; s * SECTOR < size && failures.length < 5; s++) {
    const got = image.subarray(s * SECTOR, (s + 1) * SECTOR);
    const ws = covering.get(s) ?? [];
    const acked = ws.filter((w) => w.t1 !== Infinity);
    // a write is out of the running if an acknowledged one covering the sector started after it was acknowledged
    const candidates = ws.filter((w) => !acked.some((x) => x.t0 > w.t1));
    const baseOk = acked.length === 0;
    const was = base.subarray(s * SECTOR, (s + 1) * SECTOR);
    if (baseOk && got.equals(was)) continue;
    const claim = sectorClaim(got);
    const w = claim === undefined ? undefined : candidates.find((c) => c.writer === claim.writer && c.seq === claim.seq);
    if (claim === undefined || w === undefined || claim.sector !== s) {
      failures.push(`sector ${s} (byte ${s * SECTOR}): ${claim === undefined ? 'neither its value before the round nor a write' : `holds writer ${claim.writer}'s write ${claim.seq} for sector ${claim.sector}`}; possible: ${baseOk ? 'its value before the round, ' : ''}${candidates.map((c) => `${c.writer}/${c.seq}`).join(' ') || 'none'}`);
      continue;
    }
    // the whole sector is what that write put there
    const want = Buffer.alloc(SECTOR, got.subarray(0, 16));
    if (!got.equals(want)) failures.push(`sector ${s}: writer ${w.writer}'s write ${w.seq} torn inside the sector`);
  }
  return failures;
}

/** The whole file, read O_DIRECT through the mount. */
async function readImage(file: string): Promise<Buffer> {
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  try {
    const { size } = await fh.stat();
    const out = Buffer.alloc(size);
    for (let at = 0; at < size;) {
      const { bytesRead } = await fh.read(out, at, Math.min(MiB, size - at), at);
      if (bytesRead === 0) throw new Error(`short read at ${at} of ${size}`);
      at += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}

test('concurrent O_DIRECT writers from several processes match the model across snapshots, rollbacks, resizes, holes, evictions and kill -9', async (t: ExecutionContext) => {
  const { seed, rand, int } = seeded(t);
  const engine = process.env.VPOOLFS_TEST_FUSE_ENGINE ?? 'kernel';
  const l = await freshLayout(t);
  const config = path.join(l.root, 'config.json');
  await writeFile(config, JSON.stringify({ scoClusters: 64, tlogScos: 2, scoMaxAgeMs: 300, writeCacheBytes: 2 * MiB, schedule: { snapshot: null, retention: null, scrub: null } }));
  const mount = () => startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--config', config] });
  let m: MountHandle = await mount();
  const file = m.p('disk.raw');
  let size = 6 * MiB;
  await (await fs.promises.open(file, 'w')).close();
  await fs.promises.truncate(file, size);
  let base: Buffer = Buffer.alloc(size);
  const snapshots = new Map<string, Buffer>();
  const counts: Record<string, number> = {};
  let writesAcked = 0;
  let writesBegun = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const kill = round % 3 === 2;
    let acks = 0;
    let killed: Promise<void> | undefined;
    const killAt = 20 + int(WRITERS * COUNT * 0.6);
    const onAck = () => {
      if (kill && ++acks === killAt) killed = m.kill9();
    };
    const results = await Promise.all(Array.from({ length: WRITERS }, (_, i) => runWriter(file, seed, round * 8 + i, size, onAck)));
    const writes = results.flat();
    writesBegun += writes.length;
    writesAcked += writes.filter((w) => w.t1 !== Infinity).length;
    if (kill) {
      counts.kill = (counts.kill ?? 0) + 1;
      if (killed === undefined) killed = m.kill9(); // the writers finished first: killed with nothing in flight
      await killed;
      m = await mount();
    }
    const image = await readImage(file);
    const failures = check(image, base, size, writes);
    t.deepEqual(failures, [], `round ${round}${kill ? ' (killed under the writers, mounted again)' : ''}: every sector is a possible value`);
    if (failures.length > 0) break;
    if (kill) {
      // nothing in flight: a second kill -9 and mount must change nothing
      await m.kill9();
      m = await mount();
      t.true((await readImage(file)).equals(image), `round ${round}: the image after a quiet kill -9 and mount is the image before`);
    }
    base = image;

    // between rounds, nothing in flight
    const x = rand();
    if (x < 0.25) {
      const name = `s${round}`;
      const r = await sh(`setfattr -n user.vdisk.snapshot -v ${name} ${q(file)}`);
      if (r.code !== 0) throw new Error(`snapshot ${name} failed: ${r.stderr}`);
      snapshots.set(name, Buffer.from(base));
      counts.snapshot = (counts.snapshot ?? 0) + 1;
    } else if (x < 0.45 && snapshots.size > 0) {
      const names = [...snapshots.keys()];
      const name = names[int(names.length)];
      const r = await sh(`setfattr -n user.vdisk.rollback -v ${name} ${q(file)}`);
      if (r.code !== 0) throw new Error(`rollback to ${name} failed: ${r.stderr}`);
      for (const later of names) if (Number(later.slice(1)) > Number(name.slice(1))) snapshots.delete(later);
      base = Buffer.from(snapshots.get(name)!);
      size = base.length;
      counts.rollback = (counts.rollback ?? 0) + 1;
    } else if (x < 0.65) {
      const to = 4 * MiB + SECTOR * int((4 * MiB) / SECTOR) + (rand() < 0.3 ? int(SECTOR) : 0);
      await fs.promises.truncate(file, to);
      const next = Buffer.alloc(to);
      base.copy(next, 0, 0, Math.min(to, size));
      base = next;
      size = to;
      counts.resize = (counts.resize ?? 0) + 1;
    } else if (x < 0.85) {
      const off = rand() < 0.5 ? int(256 * 1024) : int(size);
      const len = Math.min(size - off, 1 + int(200 * 1024));
      if (engine === 'kernel') {
        const r = await sh(`fallocate --punch-hole --offset ${off} --length ${len} ${q(file)}`);
        if (r.code !== 0) throw new Error(`fallocate --punch-hole failed: ${r.stderr}`);
      } else {
        // fuse-native has no fallocate: zeros written instead
        const fh = await fs.promises.open(file, fs.constants.O_RDWR);
        await fh.write(Buffer.alloc(len), 0, len, off);
        await fh.close();
      }
      base.fill(0, off, off + len);
      counts.punch = (counts.punch ?? 0) + 1;
    }
    // writers write whole sectors inside the size: an unaligned size leaves its last partial sector alone
    size -= size % SECTOR;
    if (size !== base.length) {
      await fs.promises.truncate(file, size);
      base = base.subarray(0, size);
    }
  }
  t.log(`rounds ${ROUNDS}, operations ${JSON.stringify(counts)}, writes begun ${writesBegun}, acknowledged ${writesAcked}`);
  t.is(await m.stop(), 0, 'clean stop');
  if (engine === 'kernel') {
    const stats = logEntries(m.log, 'fuse kernel session stats')[0] as { writeCrcs?: { inReaders: number; usedInSlots: number }; writeGathers?: { turns: number; writes: number } } | undefined;
    t.log(`last session: WRITEs with crcs from the readers / slot headers that used one ${JSON.stringify(stats?.writeCrcs)}; loop turns that gathered WRITEs / those WRITEs ${JSON.stringify(stats?.writeGathers)}`);
    t.true((stats?.writeCrcs?.usedInSlots ?? 0) > 0, 'slot headers were built with crcs computed in the reader threads');
    t.true((stats?.writeGathers?.turns ?? 0) > 0, 'some loop turns handed several WRITEs to the volume together');
  }
});
