/**
 * The file system of DESIGN §2 on a real mount: thin vDisks (`truncate -s 10G` uses ~0 space, `du`
 * follows real writes), the tree (ls, stat, mkdir -p, mv, rm, rmdir), shrink then grow reads zeros,
 * offsets beyond 4 GiB, several opens at once, O_DIRECT, and the `create`/`info` verbs.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, freshLayout, fuseTest, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import type { ExecutionContext } from 'ava';

const test = fuseTest();
const GiB = 2 ** 30;

async function mount(t: ExecutionContext): Promise<MountHandle> {
  const l = await freshLayout(t);
  return startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
}

test('truncate -s 10G makes a 10 GiB vDisk that uses no space; du follows real writes', async (t) => {
  const m = await mount(t);
  const disk = m.p('disk');
  await ok(t, `truncate -s 10G ${q(disk)}`);
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(10 * GiB));
  t.is((await ok(t, `du -k ${q(disk)} | cut -f1`)).trim(), '0');
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=1M count=3 conv=notrunc status=none`);
  const kib = Number((await ok(t, `du -k ${q(disk)} | cut -f1`)).trim());
  t.true(kib >= 3 * 1024 && kib <= 3 * 1024 + 8, `du says ${kib} KiB after 3 MiB written`);
  // a write far away adds only its own clusters
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=4k count=1 seek=$((8*1024*1024*1024/4096)) conv=notrunc status=none`);
  const kib2 = Number((await ok(t, `du -k ${q(disk)} | cut -f1`)).trim());
  t.is(kib2, kib + 4);
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(10 * GiB), 'the size did not change');
  t.is((await ok(t, `stat -c %o ${q(disk)}`)).trim(), '4096', 'st_blksize');
  // touch and open(O_CREAT) make empty vDisks; sizes are exact, not rounded
  await ok(t, `touch ${q(m.p('empty'))} && truncate -s 12345 ${q(m.p('odd'))}`);
  t.is((await ok(t, `stat -c %s ${q(m.p('empty'))} ${q(m.p('odd'))}`)).trim(), '0\n12345');
});

test('ls, stat, mkdir -p, mv, rm, rmdir behave like a normal file system', async (t) => {
  const m = await mount(t);
  await ok(t, `cd ${q(m.mountpoint)} && mkdir -p a/b/c && truncate -s 1M a/b/c/d1 && touch a/f`);
  t.is((await ok(t, `cd ${q(m.mountpoint)} && ls a`)).trim(), 'b\nf');
  t.is((await ok(t, `cd ${q(m.mountpoint)} && stat -c %F a/b a/b/c/d1`)).trim(), 'directory\nregular file');
  t.is((await ok(t, `cd ${q(m.mountpoint)} && ls -a a/b`)).trim(), '.\n..\nc');
  // mv of a file and of a directory keeps the data
  await ok(t, `cd ${q(m.mountpoint)} && printf hello | dd of=a/b/c/d1 conv=notrunc status=none && mv a/b/c/d1 a/d2 && mv a/b x`);
  t.is((await ok(t, `cd ${q(m.mountpoint)} && head -c 5 a/d2 && ls x`)).trim(), 'helloc');
  t.is((await ok(t, `cd ${q(m.mountpoint)} && stat -c %s a/d2`)).trim(), String(2 ** 20));
  // mv over an existing file replaces it
  await ok(t, `cd ${q(m.mountpoint)} && mv a/d2 a/f && ls a && head -c 5 a/f`).then((s) => t.is(s.trim(), 'f\nhello'));
  // rmdir of a non-empty directory fails; rm -r works; missing paths are ENOENT
  const r = await sh(`cd ${q(m.mountpoint)} && rmdir x`);
  t.not(r.code, 0);
  t.regex(r.stderr, /not empty/i);
  await ok(t, `cd ${q(m.mountpoint)} && rmdir x/c && rmdir x && rm a/f && rmdir a && ls -A`).then((s) => t.is(s.trim(), ''));
  const missing = await sh(`stat ${q(m.p('nope'))}`);
  t.regex(missing.stderr, /No such file or directory/);
  // chmod, and the modes show
  await ok(t, `cd ${q(m.mountpoint)} && touch m && chmod 600 m`);
  t.is((await ok(t, `stat -c %a ${q(m.p('m'))}`)).trim(), '600');
  // df answers
  await ok(t, `df ${q(m.mountpoint)}`);
});

test('shrink then grow reads zeros past the old end', async (t) => {
  const m = await mount(t);
  const disk = m.p('d');
  const data = Buffer.alloc(2 ** 20, 0xab);
  await writeFile(disk, data);
  await ok(t, `truncate -s 100001 ${q(disk)} && truncate -s 1M ${q(disk)}`);
  const back = await readFile(disk);
  t.is(back.length, 2 ** 20);
  t.true(back.subarray(0, 100001).equals(data.subarray(0, 100001)), 'the kept part is intact');
  t.true(back.subarray(100001).equals(Buffer.alloc(2 ** 20 - 100001)), 'the discarded part reads as zeros');
  // du shrank too
  const kib = Number((await ok(t, `du -k ${q(disk)} | cut -f1`)).trim());
  t.true(kib <= 104, `du after shrink: ${kib} KiB`);
});

test('sizes and offsets beyond 4 GiB', async (t) => {
  const m = await mount(t);
  const disk = m.p('big');
  const fh = await open(disk, 'w+');
  const a = randomBytes(65536);
  const b = randomBytes(4096);
  await fh.write(a, 0, a.length, 5 * GiB);
  await fh.write(b, 0, b.length, 4 * GiB - 2048); // straddles the 4 GiB line
  await fh.close();
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(5 * GiB + 65536));
  const rh = await open(disk, 'r');
  const ra = Buffer.alloc(a.length);
  const rb = Buffer.alloc(b.length);
  await rh.read(ra, 0, ra.length, 5 * GiB);
  await rh.read(rb, 0, rb.length, 4 * GiB - 2048);
  const hole = Buffer.alloc(8192, 1);
  await rh.read(hole, 0, hole.length, 4.5 * GiB);
  await rh.close();
  t.true(ra.equals(a));
  t.true(rb.equals(b));
  t.true(hole.equals(Buffer.alloc(8192)), 'unwritten ranges read as zeros');
  // dd with seek past 4 GiB, read back with skip
  await ok(t, `head -c 1M /dev/urandom > ${q(path.join(path.dirname(m.mountpoint), 'src'))}`);
  await ok(t, `dd if=${q(path.join(path.dirname(m.mountpoint), 'src'))} of=${q(disk)} bs=1M seek=6000 conv=notrunc status=none`);
  await ok(t, `dd if=${q(disk)} bs=1M skip=6000 count=1 status=none | cmp - ${q(path.join(path.dirname(m.mountpoint), 'src'))}`);
});

test('several opens of one vDisk at once see each other’s writes', async (t) => {
  const m = await mount(t);
  const disk = m.p('shared');
  await ok(t, `truncate -s 64M ${q(disk)}`);
  const handles = await Promise.all([open(disk, 'r+'), open(disk, 'r+'), open(disk, 'r+'), open(disk, 'r')]);
  const blocks = handles.slice(0, 3).map(() => randomBytes(128 * 1024));
  await Promise.all(handles.slice(0, 3).map((h, i) => h.write(blocks[i], 0, blocks[i].length, i * 8 * 2 ** 20)));
  for (let i = 0; i < 3; i++) {
    const got = Buffer.alloc(blocks[i].length);
    await handles[3].read(got, 0, got.length, i * 8 * 2 ** 20);
    t.true(got.equals(blocks[i]), `block ${i} through another handle`);
  }
  await Promise.all(handles.map((h) => h.close()));
});

test('O_DIRECT writes and reads (dd oflag=direct / iflag=direct)', async (t) => {
  const m = await mount(t);
  const src = path.join(path.dirname(m.mountpoint), 'src');
  await ok(t, `head -c 4M /dev/urandom > ${q(src)}`);
  await ok(t, `dd if=${q(src)} of=${q(m.p('direct'))} bs=4k oflag=direct status=none`);
  await ok(t, `dd if=${q(src)} of=${q(m.p('direct'))} bs=1M seek=4 oflag=direct conv=notrunc status=none`);
  await ok(t, `dd if=${q(m.p('direct'))} bs=4k count=1024 iflag=direct status=none | cmp - ${q(src)}`);
  await ok(t, `dd if=${q(m.p('direct'))} bs=1M skip=4 iflag=direct status=none | cmp - ${q(src)}`);
  t.is((await ok(t, `stat -c %s ${q(m.p('direct'))}`)).trim(), String(8 * 2 ** 20));
});

test('vpoolfs create FILE SIZE and vpoolfs info FILE', async (t) => {
  const m = await mount(t);
  const out = await ok(t, `node ${q(CLI)} create ${q(m.p('vm1.raw'))} 10G --json`);
  t.like(JSON.parse(out), { path: 'vm1.raw', size: 10 * GiB, allocatedBytes: 0 });
  t.is((await ok(t, `stat -c %s ${q(m.p('vm1.raw'))}`)).trim(), String(10 * GiB));
  const again = await sh(`node ${q(CLI)} create ${q(m.p('vm1.raw'))} 1G`);
  t.not(again.code, 0, 'create does not touch an existing vDisk');
  t.regex(again.stderr, /^vpoolfs: create vm1\.raw \(1073741824 bytes\): already exists: \/vm1\.raw \(EEXIST\)$/m);
  t.is((await ok(t, `stat -c %s ${q(m.p('vm1.raw'))}`)).trim(), String(10 * GiB));
  const bad = await sh(`node ${q(CLI)} create ${q(m.p('vm2.raw'))} 10Q`);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /not a size/);
  await ok(t, `dd if=/dev/urandom of=${q(m.p('vm1.raw'))} bs=64k count=1 conv=notrunc status=none`);
  const info = JSON.parse(await ok(t, `node ${q(CLI)} info ${q(m.p('vm1.raw'))} --json`));
  t.like(info, { size: 10 * GiB, allocatedBytes: 65536 });
  t.regex(await ok(t, `node ${q(CLI)} info ${q(m.p('vm1.raw'))}`), /^allocated: +64K: own 64K, inherited 0$/m);
});
