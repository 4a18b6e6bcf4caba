/**
 * The kernel FUSE engine (fuse/kernel/) through real mounts, always with `--fuse-engine kernel`:
 * - lseek SEEK_DATA/SEEK_HOLE against a seeded model of written clusters (shrinks and a clone included),
 *   and `qemu-img map` showing holes, then data after writing;
 * - statfs (`stat -f`, `df`, `df -i`): the vPool's provisioned and written bytes, 64-bit, inode counts that add up;
 * - what vpoolfs does not implement (symlink, hard link, ioctl, fifo) fails cleanly, the mount keeps serving;
 * - 1 MiB O_DIRECT writes arrive as 1 MiB requests, and the kernel does not ask GETXATTR security.capability
 *   before each write (HANDLE_KILLPRIV_V2), both counted by the session ("fuse kernel session stats" log);
 * - rollback invalidates the kernel's cache of the vDisk (NOTIFY_INVAL_INODE) and a re-read shows the old bytes;
 * - `umount` while fio runs: refused while busy, then `umount -l`: fio ends, the daemon ships and exits 0;
 * - kill -9 under fio load, then a mount at the same path clears the stale mount and every acknowledged write is there.
 * Seeded: the seed is logged; VPOOLFS_SEED=<n> replays; VPOOLFS_TEST_ROUNDS=<n> runs more model rounds.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { freshLayout, fuseTest, isMounted, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { rng } from './helpers/ref-disk.js';

const test = fuseTest();
const KERNEL = ['--fuse-engine', 'kernel'];
const SEED = runSeed();
const ROUNDS = Number(process.env.VPOOLFS_TEST_ROUNDS ?? 3);
const C4K = 4096;

async function mountKernel(t: ExecutionContext) {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: KERNEL });
  return { l, m };
}

/** The session counters the daemon logs when it stops. */
async function stopAndStats(t: ExecutionContext, m: MountHandle): Promise<Record<string, any>> {
  t.is(await m.stop(), 0, m.log);
  const s = logEntries(m.log, 'fuse kernel session stats')[0];
  t.truthy(s, m.log);
  return s ?? {};
}

/** Every [start, end) data extent of FILE, walked with SEEK_DATA / SEEK_HOLE from Python. */
const EXTENTS = `
import os, sys, json
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
out, pos = [], 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as e:
        if e.errno != 6: raise
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    out.append([d, h])
    pos = h
try:
    os.lseek(fd, size, os.SEEK_HOLE)
    enxio = False
except OSError as e:
    enxio = e.errno == 6
print(json.dumps({"extents": out, "enxioAtEnd": enxio}))
`;

async function extents(t: ExecutionContext, file: string): Promise<{ extents: [number, number][]; enxioAtEnd: boolean }> {
  return JSON.parse(await ok(t, `python3 -c ${q(EXTENTS)} ${q(file)}`));
}

/** The model's extents: runs of written clusters, cut at the size. */
function modelExtents(written: Set<number>, size: number): [number, number][] {
  const out: [number, number][] = [];
  const last = Math.ceil(size / C4K);
  for (let a = 0; a < last; a++) {
    if (!written.has(a)) continue;
    const start = a;
    while (a + 1 < last && written.has(a + 1)) a++;
    out.push([start * C4K, Math.min(size, (a + 1) * C4K)]);
  }
  return out;
}

test('lseek SEEK_DATA/SEEK_HOLE follows a seeded model of written clusters, through shrinks and in a clone', async (t) => {
  t.log(`seed ${SEED} (VPOOLFS_SEED=${SEED} replays this run)`);
  const r = rng(SEED);
  const { m } = await mountKernel(t);
  const file = m.p('model');
  let size = 16 * 2 ** 20;
  await ok(t, `truncate -s ${size} ${q(file)}`);
  const written = new Set<number>();
  t.deepEqual(await extents(t, file), { extents: [], enxioAtEnd: true }, 'a new vDisk is one hole');
  for (let round = 0; round < ROUNDS; round++) {
    const writes: [number, number][] = [];
    for (let i = 0; i < 12; i++) {
      const offset = Math.floor(r() * (size - 64 * 1024));
      const length = 1 + Math.floor(r() * 40_000);
      writes.push([offset, length]);
      for (let a = Math.floor(offset / C4K); a <= Math.floor((offset + length - 1) / C4K); a++) written.add(a);
    }
    const py = `import os\nfd=os.open(${JSON.stringify(file)}, os.O_WRONLY)\nfor o,l in ${JSON.stringify(writes)}: os.pwrite(fd, b'\\x5a'*l, o)\nos.close(fd)`;
    await ok(t, `python3 -c ${q(py)}`);
    t.deepEqual((await extents(t, file)).extents, modelExtents(written, size), `round ${round} after writes ${JSON.stringify(writes)}`);
    // shrink to a random size (discards the clusters past it), then grow back: the discarded range is a hole
    const cut = C4K * Math.floor((r() * size) / C4K) + Math.floor(r() * C4K);
    await ok(t, `truncate -s ${cut} ${q(file)} && truncate -s ${size} ${q(file)}`);
    for (const a of [...written]) if (a * C4K >= cut) written.delete(a);
    t.deepEqual((await extents(t, file)).extents, modelExtents(written, size), `round ${round} after a shrink to ${cut}`);
  }
  // a clone's clusters come from its parent: they are data too
  await ok(t, `setfattr -n user.vdisk.clone -v :clone ${q(file)}`);
  t.deepEqual((await extents(t, m.p('clone'))).extents, modelExtents(written, size), 'the clone maps what its parent wrote');
  size += 8 * 2 ** 20;
  await ok(t, `truncate -s ${size} ${q(m.p('clone'))} && dd if=/dev/urandom of=${q(m.p('clone'))} bs=4096 seek=${(size - C4K) / C4K} count=1 conv=notrunc status=none`);
  written.add(size / C4K - 1);
  t.deepEqual((await extents(t, m.p('clone'))).extents, modelExtents(written, size), 'and its own writes');
});

test('qemu-img map shows a sparse vDisk as holes, and the data once written', async (t) => {
  const { m } = await mountKernel(t);
  const disk = m.p('sparse.raw');
  await ok(t, `truncate -s 64M ${q(disk)}`);
  const map0 = JSON.parse(await ok(t, `qemu-img map -f raw --output=json ${q(disk)}`)) as { start: number; length: number; data: boolean }[];
  t.deepEqual(map0.map((e) => [e.start, e.length, e.data]), [[0, 64 * 2 ** 20, false]]);
  await ok(t, `qemu-io -f raw -c 'write -P 0x11 8M 1M' -c 'write -P 0x22 40M 4k' ${q(disk)}`);
  const map1 = JSON.parse(await ok(t, `qemu-img map -f raw --output=json ${q(disk)}`)) as { start: number; length: number; data: boolean }[];
  t.deepEqual(
    map1.map((e) => [e.start, e.length, e.data]),
    [[0, 8 * 2 ** 20, false], [8 * 2 ** 20, 2 ** 20, true], [9 * 2 ** 20, 31 * 2 ** 20, false], [40 * 2 ** 20, C4K, true], [40 * 2 ** 20 + C4K, 24 * 2 ** 20 - C4K, false]],
  );
});

test('statfs: stat -f and df show the vPool (size = provisioned, used = written), 64-bit, inodes that add up', async (t) => {
  const { m } = await mountKernel(t);
  const fields = async () => (await ok(t, `stat -f -c '%s %S %b %f %a %c %d %l' ${q(m.mountpoint)}`)).trim().split(' ').map(Number);
  const [bs, frsize, total, free, avail, files, ffree, namemax] = await fields();
  t.is(bs, 4096);
  t.is(frsize, 4096);
  t.deepEqual([total, free, avail], [0, 0, 0], 'an empty vPool has nothing provisioned: not the write cache filesystem');
  t.is(namemax, 255);
  t.is(files - ffree, 1, 'the root is the one node in use');
  await ok(t, `mkdir ${q(m.p('d'))} && touch ${q(m.p('d/a'))} && truncate -s 64T ${q(m.p('d/b'))}`);
  await ok(t, `dd if=/dev/urandom of=${q(m.p('d/a'))} bs=4k count=3 conv=fsync status=none`);
  const after = await fields();
  t.is(after[2], 2 ** 34 + 3, '64 TiB + 12 KiB provisioned, in 4 KiB blocks (past 32 bits)');
  t.is(after[2] - after[3], 3, 'three 4 KiB clusters written');
  t.is(after[4], after[3]);
  t.is(after[5] - after[6], 4, 'root, d, a, b');
  const df = await ok(t, `df -B1 --output=source,size,used ${q(m.mountpoint)}`);
  t.regex(df, new RegExp(`vpoolfs:vp\\s+${(2 ** 34 + 3) * 4096}\\s+${3 * 4096}`));
  const dfi = await ok(t, `df --output=iused ${q(m.mountpoint)}`);
  t.is(dfi.trim().split('\n').pop()!.trim(), '4', 'df -i: IUsed is the nodes in use, never negative');
});

test('what vpoolfs does not implement fails cleanly (symlink, link, ioctl, fifo) and the mount keeps serving', async (t) => {
  const { m } = await mountKernel(t);
  await ok(t, `echo data > ${q(m.p('f'))}`);
  const symlink = await sh(`ln -s f ${q(m.p('s'))}`);
  t.not(symlink.code, 0);
  t.regex(symlink.stderr, /not implemented|not supported|not permitted/i);
  const link = await sh(`ln ${q(m.p('f'))} ${q(m.p('h'))}`);
  t.not(link.code, 0);
  const ioctl = await sh(`lsattr ${q(m.p('f'))}`);
  t.not(ioctl.code, 0, 'FS_IOC_GETFLAGS is an ioctl vpoolfs does not answer');
  const fifo = await sh(`mkfifo ${q(m.p('p'))}`);
  t.not(fifo.code, 0, 'only regular files and directories exist');
  t.is((await ok(t, `cat ${q(m.p('f'))}`)).trim(), 'data');
  t.is((await ok(t, `ls ${q(m.mountpoint)}`)).trim(), 'f');
  const s = await stopAndStats(t, m);
  t.true(s.unknownOpcodes >= 2, `SYMLINK, LINK and IOCTL are unknown opcodes: ${JSON.stringify(s)}`);
});

const RENAME2 = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def rename2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
d = sys.argv[1]
print(rename2(d + '/a', d + '/b', 1), rename2(d + '/a', d + '/c', 1), rename2(d + '/c', d + '/b', 2), sorted(os.listdir(d)))
`;

test('fallocate grows (KEEP_SIZE: nothing to do; punch hole and zero range keep the size; collapse and insert: EOPNOTSUPP); renameat2 NOREPLACE and EXCHANGE', async (t) => {
  const { m } = await mountKernel(t);
  const f = m.p('a');
  await ok(t, `truncate -s 1M ${q(f)}`);
  await ok(t, `fallocate -o 1M -l 3M ${q(f)}`);
  t.is((await ok(t, `stat -c '%s %b' ${q(f)}`)).trim(), `${4 * 2 ** 20} 0`, 'grown, nothing allocated');
  await ok(t, `fallocate -n -o 0 -l 8M ${q(f)}`);
  t.is((await ok(t, `stat -c %s ${q(f)}`)).trim(), String(4 * 2 ** 20), 'KEEP_SIZE leaves the size');
  // punch hole and zero range discard (fuse-kernel-discard.test.ts): the size stays
  await ok(t, `fallocate -p -o 0 -l 4096 ${q(f)} && fallocate -z -o 4096 -l 4096 ${q(f)}`);
  t.is((await ok(t, `stat -c '%s %b' ${q(f)}`)).trim(), `${4 * 2 ** 20} 0`, 'punch and zero range: same size, nothing allocated');
  for (const flag of ['--collapse-range', '--insert-range']) {
    const r = await sh(`fallocate ${flag} -o 0 -l 4096 ${q(f)}`);
    t.not(r.code, 0, `fallocate ${flag}`);
    t.regex(r.stderr, /not supported|unsupported/i, `fallocate ${flag}: ${r.stderr}`);
  }
  await ok(t, `truncate -s 4k ${q(m.p('b'))}`);
  // NOREPLACE onto b: EEXIST (17); NOREPLACE onto c: done; EXCHANGE: EINVAL (22)
  t.is((await ok(t, `python3 -c ${q(RENAME2)} ${q(m.mountpoint)}`)).trim(), "17 0 22 ['b', 'c']");
  t.is((await ok(t, `stat -c %s ${q(m.p('c'))}`)).trim(), String(4 * 2 ** 20));
});

test('1 MiB O_DIRECT writes arrive as 1 MiB requests; no GETXATTR security.capability before each write', async (t) => {
  const { m } = await mountKernel(t);
  await ok(t, `dd if=/dev/urandom of=${q(m.p('big'))} bs=1M count=16 oflag=direct status=none`);
  await ok(t, `dd if=/dev/urandom of=${q(m.p('small'))} bs=4k count=500 oflag=direct status=none`);
  const s = await stopAndStats(t, m);
  t.is(s.writes.largestBytes, 2 ** 20, JSON.stringify(s));
  t.true(s.writes.fullMaxWrite >= 16, JSON.stringify(s));
  // without HANDLE_KILLPRIV_V2 the kernel sends one GETXATTR security.capability per write (516 here)
  t.true(s.requests.WRITE >= 516, JSON.stringify(s));
  t.true((s.requests.GETXATTR ?? 0) < 10, `GETXATTR requests: ${s.requests.GETXATTR} for ${s.requests.WRITE} writes`);
});

test('rollback invalidates the kernel cache of the vDisk: a re-read shows the snapshot bytes and size', async (t) => {
  const { m } = await mountKernel(t);
  const f = m.p('disk');
  await ok(t, `printf 'AAAA%.0s' $(seq 1 2048) > ${q(f)} && cat ${q(f)} > /dev/null`);
  await ok(t, `setfattr -n user.vdisk.snapshot -v s1 ${q(f)}`);
  await ok(t, `printf 'BBBB%.0s' $(seq 1 4096) > ${q(f)}`);
  t.is((await ok(t, `head -c 4 ${q(f)}; stat -c ' %s' ${q(f)}`)).trim(), 'BBBB 16384', 'read through the page cache');
  await ok(t, `setfattr -n user.vdisk.rollback -v s1 ${q(f)}`);
  t.is((await ok(t, `head -c 4 ${q(f)}; stat -c ' %s' ${q(f)}`)).trim(), 'AAAA 8192');
  t.is(createHash('sha256').update(await ok(t, `cat ${q(f)}`)).digest('hex'), createHash('sha256').update('AAAA'.repeat(2048)).digest('hex'));
  const s = await stopAndStats(t, m);
  t.true(s.invalidations >= 1, `the rollback sent NOTIFY_INVAL_INODE: ${JSON.stringify(s)}`);
});

function startFio(file: string, seconds: number, extra = ''): { done: Promise<number> } {
  const child = spawn('fio', ['--name=load', `--filename=${file}`, '--size=64M', '--direct=1', '--ioengine=libaio', '--rw=randwrite', '--bs=4k', '--iodepth=16', `--runtime=${seconds}`, '--time_based', ...(extra ? [extra] : [])], { stdio: 'ignore' });
  return { done: new Promise((resolve) => child.on('close', (code) => resolve(code ?? -1))) };
}

test('umount while fio runs: busy, then umount -l ends the session; the daemon ships and exits 0', async (t) => {
  const { m } = await mountKernel(t);
  await ok(t, `truncate -s 64M ${q(m.p('load'))}`);
  const fio = startFio(m.p('load'), 8);
  // until fio has the file open (a loaded machine may take a while to start it)
  for (let i = 0; i < 600 && (await sh(`fuser -s ${q(m.p('load'))}`)).code !== 0; i++) await sleep(100);
  const busy = await sh(`umount ${q(m.mountpoint)}`);
  t.not(busy.code, 0, 'umount of a mount with an open file is refused');
  t.true(m.alive);
  await ok(t, `umount -l ${q(m.mountpoint)}`);
  t.false(await isMounted(m.mountpoint), 'detached at once');
  const fioCode = await Promise.race([fio.done, sleep(120_000, 'hung' as const)]);
  t.not(fioCode, 'hung', 'fio ends');
  const exit = await Promise.race([m.exited, sleep(120_000, 'hung' as const)]);
  t.not(exit, 'hung', `the daemon exits once the last file is closed:\n${m.log}`);
  if (exit !== 'hung') t.is(exit.code, 0, m.log);
  t.is(logEntries(m.log, 'the mount went away without vpoolfs unmounting it (umount from outside, or an abort)').length, 1, m.log);
});

const WRITER = `
import os, sys, hashlib
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
i = 0
while i < 16384:
    body = (b'%08d' % i) + hashlib.sha256(b'%d' % i).digest() * 128
    try:
        os.pwrite(fd, body[:4096], i * 4096)
    except OSError as e:
        break
    sys.stdout.write('%d\\n' % i)
    sys.stdout.flush()
    i += 1
`;
import { runSeed } from './helpers/seed.js';

test('kill -9 under fio load, mount again at the same path: the stale mount is cleared, acknowledged writes are there', async (t) => {
  const l = await freshLayout(t);
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: KERNEL };
  const m = await startMount(t, opts);
  await ok(t, `truncate -s 64M ${q(m.p('load'))}`);
  const fio = startFio(m.p('load'), 30);
  const child = spawn('python3', ['-c', WRITER, m.p('acked')], { stdio: ['ignore', 'pipe', 'ignore'] });
  const acks: number[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    const lines = (buf + d.toString()).split('\n');
    buf = lines.pop()!;
    for (const x of lines) acks.push(Number(x));
  });
  const writerDone = new Promise<void>((resolve) => child.on('close', () => resolve()));
  for (let i = 0; i < 3000 && acks.length < 300 && child.exitCode === null; i++) await sleep(20);
  await m.kill9();
  await writerDone;
  await Promise.race([fio.done, sleep(60_000)]);
  t.true(acks.length >= 300, `${acks.length} acks before the kill`);

  const m2 = await startMount(t, opts);
  t.regex(m2.log, /clearing a stale mount/);
  const fh = await open(m2.p('acked'), 'r');
  const got = Buffer.alloc(C4K);
  const bad: number[] = [];
  for (const i of acks) {
    await fh.read(got, 0, C4K, i * C4K);
    const h = createHash('sha256').update(String(i)).digest();
    const want = Buffer.concat([Buffer.from(String(i).padStart(8, '0')), Buffer.concat(Array(128).fill(h))]).subarray(0, C4K);
    if (!got.equals(want)) bad.push(i);
  }
  await fh.close();
  t.is(bad.length, 0, `${bad.length} of ${acks.length} acknowledged writes missing: ${bad.slice(0, 10).join(' ')}`);
  t.is(await m2.stop(), 0, m2.log);
});
