/**
 * Kernel engine only (npm test runs fuse-kernel-* files once, on the kernel engine). READs answered in the
 * engine's reader threads from the write cache (fuse/kernel/fast-read.ts, volume/datapath/write-cache/reader-view.ts),
 * model-based on a real mount: several concurrent O_DIRECT readers read random ranges (aligned 4 KiB mostly,
 * some unaligned and up to 64 KiB) — four in this process (libuv's threads) and one in a process of its own
 * (helpers/timed-reader.ts, its reads checked after the run against a CLOCK_MONOTONIC timeline of the
 * mutations) — while one mutator writes (some growing the file), punches holes
 * (`fallocate --punch-hole`), resizes (shrink, grow), takes snapshots and rolls back (setfattr), and a third
 * of the way through clones a snapshot (user.vdisk.clone) and goes on with both files (the clone's inherited
 * clusters go to the main thread, its own writes are served in the readers), with a write cache of 2 MiB so
 * that SCOs are uploaded and evicted all along (their descriptors closed under the readers).
 * Every byte read is compared with a reference: a cluster read while mutations ran may hold its value from
 * when the read started or any value a mutation overlapping the read gave it, the length any size current
 * meanwhile; a read that starts after a mutation returned sees it. The session's counters must show READs
 * answered in the readers (the test fails if the fast path is never taken) and some handed to the main
 * thread (evicted clusters). Seeded: the seed is logged, VPOOLFS_SEED=<n> replays the same operations
 * (the interleaving with the readers is the machine's); VPOOLFS_FAST_READ_OPS=<n> runs longer.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { freshLayout, fuseTest, logEntries, q, sh, startMount } from './helpers/mount.js';
import { pattern, rng } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();
const CS = 4096;
const MiB = 2 ** 20;
const READERS = 4;
const OPS = Number(process.env.VPOOLFS_FAST_READ_OPS ?? 600);
const ZERO = Buffer.alloc(CS);

/** The reference: the value of each cluster (immutable buffers, replaced on change) and the size. */
interface State {
  size: number;
  clusters: Buffer[];
}

/** A mutation: the size it leaves and the new value of the clusters it changes. */
interface Op {
  size: number;
  values: Map<number, Buffer>;
}

/** A read in flight: what it may see (the state as it started, and every mutation that overlapped it). */
interface OpenRead {
  sizes: Set<number>;
  ops: Op[];
}

/** A mutation on the timeline (CLOCK_MONOTONIC ns: the same clock as the reader process's). */
interface Logged {
  op: Op;
  begin: number;
  end: number;
  applied: boolean;
}

const nowNs = (): number => Number(process.hrtime.bigint());

class Model {
  state: State = { size: 0, clusters: [] };
  /** Every mutation, in order (one at a time: the ends increase), for reads checked after the fact. */
  readonly log: Logged[] = [];
  private readonly inflight = new Set<Op>();
  private readonly reads = new Set<OpenRead>();

  value(a: number): Buffer {
    return this.state.clusters[a] ?? ZERO;
  }

  /**
   * Registers a mutation as started (reads overlapping it may see it); returns the function that ends it
   * (`applied` false: it failed, the reference stays as it was).
   */
  begin(op: Op): (applied?: boolean) => void {
    const logged: Logged = { op, begin: nowNs(), end: Infinity, applied: false };
    this.log.push(logged);
    this.inflight.add(op);
    for (const r of this.reads) {
      r.ops.push(op);
      r.sizes.add(op.size);
    }
    return (applied = true) => {
      logged.end = nowNs();
      logged.applied = applied;
      this.inflight.delete(op);
      if (!applied) return;
      for (const [a, v] of op.values) this.state.clusters[a] = v;
      this.state.size = op.size;
    };
  }

  /** A read starts: returns the snapshot of what it may see (the clusters of its range as they are now). */
  startRead(off: number, len: number): { r: OpenRead; now: Buffer[]; first: number } {
    const r: OpenRead = { sizes: new Set([this.state.size]), ops: [...this.inflight] };
    for (const op of this.inflight) r.sizes.add(op.size);
    this.reads.add(r);
    const first = Math.floor(off / CS);
    const now: Buffer[] = [];
    for (let a = first; a * CS < off + len; a++) now.push(this.value(a));
    return { r, now, first };
  }

  endRead(r: OpenRead): void {
    this.reads.delete(r);
  }
}

/**
 * Checks the reads of the reader process (helpers/timed-reader.ts) against the timeline of mutations logged
 * from `from` on, the state then being `base`: a read over [t0, t1] may see, per cluster, its value after the
 * mutations that ended before t0, or the value of any mutation that overlapped [t0, t1]; its length likewise.
 * Returns the failures (at most 5) and the number of reads checked.
 */
function checkTimed(records: Buffer, base: State, log: Logged[], from: number): { failures: string[]; checked: number } {
  const entries = log.slice(from);
  // per cluster, its values in order with the end of the mutation that set them; the sizes likewise
  const versions = new Map<number, Array<{ end: number; v: Buffer }>>();
  const sizes: Array<{ end: number; size: number }> = [];
  for (const e of entries) {
    if (!e.applied) continue;
    sizes.push({ end: e.end, size: e.op.size });
    for (const [a, v] of e.op.values) {
      let list = versions.get(a);
      if (list === undefined) versions.set(a, (list = []));
      list.push({ end: e.end, v });
    }
  }
  const lastBefore = <T extends { end: number }>(list: T[], t: number): T | undefined => {
    let lo = 0;
    let hi = list.length; // first index whose end >= t
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].end < t) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : list[lo - 1];
  };
  const failures: string[] = [];
  let checked = 0;
  for (let pos = 0; pos + 32 <= records.length && failures.length < 5;) {
    const t0 = records.readDoubleLE(pos);
    const t1 = records.readDoubleLE(pos + 8);
    const off = records.readDoubleLE(pos + 16);
    const len = records.readUInt32LE(pos + 24);
    const n = records.readUInt32LE(pos + 28);
    const first = Math.floor(off / CS);
    const clusters = n === 0 ? 0 : Math.floor((off + n - 1) / CS) - first + 1;
    if (pos + 32 + clusters * 4 > records.length) break; // cut short by the end of the process
    const overlapping = entries.filter((e) => e.end >= t0 && e.begin <= t1);
    const possibleSizes = [lastBefore(sizes, t0)?.size ?? base.size, ...overlapping.map((e) => e.op.size)];
    if (!possibleSizes.some((sz) => n === Math.max(0, Math.min(len, sz - off)))) failures.push(`reader process: ${n} bytes at ${off} (+${len}); sizes possible ${possibleSizes.join(', ')}`);
    for (let k = 0; k < clusters; k++) {
      const a = first + k;
      const c = a * CS;
      const lo = Math.max(off, c) - c;
      const hi = Math.min(off + n, c + CS) - c;
      const got = records.readUInt32LE(pos + 32 + k * 4);
      const list = versions.get(a) ?? [];
      const candidates = [lastBefore(list, t0)?.v ?? base.clusters[a] ?? ZERO, ...overlapping.map((e) => e.op.values.get(a)).filter((v): v is Buffer => v !== undefined)];
      if (!candidates.some((v) => (crc32(v.subarray(lo, hi)) >>> 0) === got)) {
        failures.push(`reader process: cluster ${a} (bytes ${c + lo}..${c + hi}) read wrong: none of ${candidates.length} possible values`);
        break;
      }
    }
    checked++;
    pos += 32 + clusters * 4;
  }
  return { failures, checked };
}

/** The value of cluster `a` after bytes `data` land at `off` (only the part inside this cluster). */
function merged(old: Buffer, a: number, off: number, data: Buffer): Buffer {
  const c = a * CS;
  const from = Math.max(off, c);
  const to = Math.min(off + data.length, c + CS);
  const v = Buffer.from(old);
  data.copy(v, from - c, from - off, to - off);
  return v;
}

/** Mutation values for `data` written at `off`. */
function writeOp(m: Model, off: number, data: Buffer): Op {
  const values = new Map<number, Buffer>();
  for (let a = Math.floor(off / CS); a * CS < off + data.length; a++) values.set(a, merged(m.value(a), a, off, data));
  return { size: Math.max(m.state.size, off + data.length), values };
}

/** A shrink zeroes what lies past the new size (a later grow shows zeros there); a grow changes no data. */
function resizeOp(m: Model, size: number): Op {
  const values = new Map<number, Buffer>();
  if (size < m.state.size) {
    for (let a = Math.floor(size / CS); a * CS < m.state.size; a++) {
      const c = a * CS;
      values.set(a, c >= size ? ZERO : merged(m.value(a), a, size, Buffer.alloc(c + CS - size)));
    }
  }
  return { size, values };
}

test('reads served in the reader threads match the reference under concurrent writes, discards, resizes, rollbacks, a clone and evictions', async (t) => {
  const { seed, rand, int } = seeded(t);
  const l = await freshLayout(t);
  const config = path.join(l.root, 'config.json');
  // a small write cache and small SCOs: SCOs close, upload and get evicted all along
  await writeFile(config, JSON.stringify({ scoClusters: 64, tlogScos: 2, scoMaxAgeMs: 300, writeCacheBytes: 2 * MiB, schedule: { snapshot: null, retention: null, scrub: null } }));
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--fuse-engine', 'kernel', '--config', config] });
  const file = m.p('disk.raw');
  const model = new Model();
  const O_DIRECT = fs.constants.O_DIRECT;
  // the files read: the vDisk, and from a third of the run on a clone of one of its snapshots (its own
  // writes are served in the readers; what it inherits goes to the main thread)
  const files: Array<{ path: string; model: Model }> = [{ path: file, model }];
  const clonePath = m.p('clone.raw');

  // start: 8 MiB, the first 6 MiB written
  const first = await fs.promises.open(file, fs.constants.O_CREAT | fs.constants.O_RDWR | O_DIRECT);
  /** The mutator's descriptor of each file. */
  const wfhs = new Map([[file, first]]);
  await first.truncate(8 * MiB);
  model.state.size = 8 * MiB;
  const init = pattern(seed, 0, 6 * MiB);
  await first.write(init, 0, init.length, 0);
  model.begin(writeOp(model, 0, init))();

  // the readers: each its own O_DIRECT descriptor, closed while a rollback waits for the vDisk to be unopened
  let paused: Promise<void> | null = null;
  let stop = false;
  let reads = 0;
  const failures: string[] = [];
  const reader = async (id: number) => {
    const r = rng(seed + 1000 + id);
    const buf = Buffer.alloc(64 * 1024);
    const fhs = new Map<string, fs.promises.FileHandle>();
    while (!stop && failures.length === 0) {
      if (paused !== null) {
        for (const fh of fhs.values()) await fh.close();
        fhs.clear();
        await paused;
        continue;
      }
      const { path: which, model } = files[Math.floor(r() * files.length)];
      let fh = fhs.get(which);
      if (fh === undefined) {
        fh = await fs.promises.open(which, fs.constants.O_RDONLY | O_DIRECT);
        fhs.set(which, fh);
      }
      const max = Math.max(model.state.size, 10 * MiB);
      const aligned = r() < 0.75;
      const len = aligned ? CS * (r() < 0.8 ? 1 : 1 + Math.floor(r() * 16)) : 1 + Math.floor(r() * 3 * CS);
      const off = aligned ? CS * Math.floor((r() * max) / CS) : Math.floor(r() * max);
      const { r: open, now, first } = model.startRead(off, len);
      const { bytesRead } = await fh.read(buf, 0, len, off);
      model.endRead(open);
      reads++;
      const okLength = [...open.sizes].some((s) => bytesRead === Math.max(0, Math.min(len, s - off)));
      if (!okLength) failures.push(`reader ${id}, ${path.basename(which)}: ${bytesRead} bytes at ${off} (+${len}); sizes possible ${[...open.sizes].join(', ')}`);
      for (let a = first; a * CS < off + bytesRead; a++) {
        const c = a * CS;
        const from = Math.max(off, c);
        const to = Math.min(off + bytesRead, c + CS);
        const got = buf.subarray(from - off, to - off);
        const candidates = [now[a - first], ...open.ops.map((op) => op.values.get(a)).filter((v): v is Buffer => v !== undefined)];
        if (!candidates.some((v) => v.subarray(from - c, to - c).equals(got))) {
          failures.push(`reader ${id}, ${path.basename(which)}: cluster ${a} (bytes ${from}..${to}) read wrong: none of ${candidates.length} possible values`);
          break;
        }
      }
    }
    for (const fh of fhs.values()) await fh.close();
  };
  const readers = Array.from({ length: READERS }, (_, i) => reader(i));
  // and one in a process of its own, on the first file, checked after the run against the timeline
  const timedBase: State = { size: model.state.size, clusters: [...model.state.clusters] };
  const timedFrom = model.log.length;
  const child = spawn(process.execPath, [fileURLToPath(new URL('./helpers/timed-reader.js', import.meta.url)), file, String(seed), String(10 * MiB)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const timedOut: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => timedOut.push(d));
  const childExit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  const snapshots = new Map<string, State>();
  const counts: Record<string, number> = {};
  try {
    for (let n = 1; n <= OPS && failures.length === 0; n++) {
      const kind = ((x) => (x < 0.55 ? 'write' : x < 0.7 ? 'discard' : x < 0.8 ? 'resize' : x < 0.9 ? 'snapshot' : 'rollback'))(rand());
      counts[kind] = (counts[kind] ?? 0) + 1;
      // the clone: a third of the way through, from one of the snapshots
      if (n === Math.floor(OPS / 3) && snapshots.size > 0 && files.length === 1) {
        const names = [...snapshots.keys()];
        const name = names[int(names.length)];
        const at = snapshots.get(name)!;
        const r = await sh(`setfattr -n user.vdisk.clone -v ${q(`${name}:clone.raw`)} ${q(file)}`);
        if (r.code !== 0) throw new Error(`clone of ${name} failed: ${r.stderr}`);
        const cm = new Model();
        cm.state = { size: at.size, clusters: [...at.clusters] };
        wfhs.set(clonePath, await fs.promises.open(clonePath, fs.constants.O_RDWR | O_DIRECT));
        files.push({ path: clonePath, model: cm });
        counts.clone = 1;
      }
      // writes, discards and resizes go to either file; snapshots and rollbacks to the first
      const target = kind === 'write' || kind === 'discard' || kind === 'resize' ? files[int(files.length)] : files[0];
      const { model } = target;
      const wfh = wfhs.get(target.path)!;
      const size = model.state.size;
      if (kind === 'write') {
        // mostly inside, some growing the file (a size change under the readers' seqlock)
        const len = rand() < 0.7 ? CS * (1 + int(16)) : 1 + int(20000);
        const off = rand() < 0.9 ? (rand() < 0.7 ? CS * int(size / CS) : int(size)) : size - int(CS) + int(64 * 1024);
        const data = pattern(seed, n, len);
        const end = model.begin(writeOp(model, off, data));
        await wfh.write(data, 0, len, off);
        end();
      } else if (kind === 'discard') {
        const off = rand() < 0.7 ? CS * int(size / CS) : int(size);
        const len = Math.min(size - off, rand() < 0.5 ? CS * (1 + int(64)) : 1 + int(100000));
        if (len <= 0) continue;
        const end = model.begin(writeOp(model, off, Buffer.alloc(len)));
        const r = await sh(`fallocate --punch-hole --offset ${off} --length ${len} ${q(target.path)}`);
        if (r.code !== 0) throw new Error(`fallocate --punch-hole failed: ${r.stderr}`);
        end();
      } else if (kind === 'resize') {
        const to = 4 * MiB + CS * int((8 * MiB) / CS) + (rand() < 0.3 ? int(CS) : 0);
        const end = model.begin(resizeOp(model, to));
        await wfh.truncate(to);
        end();
      } else if (kind === 'snapshot') {
        const name = `s${n}`;
        const at: State = { size: model.state.size, clusters: [...model.state.clusters] };
        const r = await sh(`setfattr -n user.vdisk.snapshot -v ${name} ${q(file)}`);
        if (r.code !== 0) throw new Error(`snapshot ${name} failed: ${r.stderr}`);
        snapshots.set(name, at);
      } else {
        if (snapshots.size === 0) continue;
        const names = [...snapshots.keys()];
        const name = names[int(names.length)];
        const at = snapshots.get(name)!;
        const values = new Map<number, Buffer>();
        const top = Math.max(model.state.clusters.length, at.clusters.length);
        for (let a = 0; a < top; a++) values.set(a, at.clusters[a] ?? ZERO);
        // the vDisk must be unopened when the rollback starts: readers and the writer close their
        // descriptors; the readers come back after a moment, while the rollback may still run
        let resume!: () => void;
        paused = new Promise((r) => (resume = r));
        child.stdin.write('p');
        await wfh.close();
        wfhs.delete(file);
        await new Promise((r) => setTimeout(r, 50));
        const end = model.begin({ size: at.size, values });
        const rollback = sh(`setfattr -n user.vdisk.rollback -v ${name} ${q(file)}`);
        setTimeout(() => {
          paused = null;
          child.stdin.write('r');
          resume();
        }, 20 + int(200));
        const r = await rollback;
        if (r.code === 0) {
          end();
          // the snapshots taken after it are gone with the rollback
          for (const later of names) if (Number(later.slice(1)) > Number(name.slice(1))) snapshots.delete(later);
        } else if (/busy/i.test(r.stderr)) {
          // a reader opened it again before the check: not rolled back (the reads meanwhile allowed both)
          end(false);
          counts.rollbackBusy = (counts.rollbackBusy ?? 0) + 1;
        } else throw new Error(`rollback to ${name} failed: ${r.stderr}`);
        wfhs.set(file, await fs.promises.open(file, fs.constants.O_RDWR | O_DIRECT));
      }
    }
  } finally {
    stop = true;
    child.stdin.end();
    await Promise.all(readers);
    await childExit;
    for (const fh of wfhs.values()) await fh.close().catch(() => undefined);
  }
  t.log(`operations ${JSON.stringify(counts)}, reads ${reads}`);
  t.deepEqual(failures.slice(0, 5), [], 'every read matched the reference');
  const timed = checkTimed(Buffer.concat(timedOut), timedBase, model.log, timedFrom);
  t.log(`reads of the reader process checked: ${timed.checked}`);
  t.deepEqual(timed.failures, [], 'every read of the reader process matched the timeline');
  t.true(timed.checked > 0, 'the reader process read');

  // a final full read of each file after everything settled: exactly the reference
  for (const { path: which, model: fm } of files) {
    const final = Buffer.from((await sh(`dd if=${q(which)} bs=64k iflag=direct status=none | base64 -w0`, { timeoutMs: 60_000 })).stdout, 'base64');
    const want = Buffer.alloc(fm.state.size);
    for (let a = 0; a * CS < fm.state.size; a++) fm.value(a).copy(want, a * CS, 0, Math.min(CS, fm.state.size - a * CS));
    t.true(final.equals(want), `${path.basename(which)} reads as the reference at the end`);
  }
  t.is(files.length, 2, 'the clone was made');

  t.is(await m.stop(), 0, 'clean stop');
  const stats = logEntries(m.log, 'fuse kernel session stats')[0] as { reads?: { inReaders: number; toMain: number } } | undefined;
  t.log(`READs answered in the reader threads / by the main thread: ${JSON.stringify(stats?.reads)}`);
  t.true((stats?.reads?.inReaders ?? 0) > reads / 10, 'many READs were answered in the reader threads');
  t.true((stats?.reads?.toMain ?? 0) > 0, 'and some went to the main thread (clusters evicted from the write cache)');
});
