/**
 * Snapshots, rollback, clones and templates on a real mount, driven by setfattr/getfattr (DESIGN §3):
 * the bytes read back through the mount are compared with what was written, across a clean remount and a
 * remount from the backend alone (state directory removed).
 */
import { rm } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import { freshLayout, fuseTest, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { noAutoSnapshots, xattrCalls } from './helpers/snapshot-xattr.js';
import type { SnapshotInfo } from '../volume/types.js';

const test = fuseTest();

async function snaps(t: ExecutionContext, file: string): Promise<SnapshotInfo[]> {
  return JSON.parse(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(file)}`)) as SnapshotInfo[];
}

async function info(t: ExecutionContext, file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(file)}`)) as Record<string, unknown>;
}

const md5 = async (t: ExecutionContext, file: string): Promise<string> => (await ok(t, `md5sum < ${q(file)}`)).split(' ')[0];
const setx = (t: ExecutionContext, file: string, name: string, value: string): Promise<string> => ok(t, `setfattr -n ${name} -v ${q(value)} ${q(file)}`);

test('snapshot, overwrite, rollback: the bytes and size of the snapshot; the list survives remounts', async (t) => {
  const l = await freshLayout(t);
  let m: MountHandle = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const disk = m.p('disk');
  await ok(t, `truncate -s 8M ${q(disk)} && dd if=/dev/urandom of=${q(disk)} bs=64k count=40 conv=notrunc status=none`);
  const s1 = await md5(t, disk);
  await setx(t, disk, 'user.vdisk.snapshot', 's1');
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=4k count=300 seek=7 conv=notrunc status=none && truncate -s 9M ${q(disk)}`);
  await setx(t, disk, 'user.vdisk.snapshot.sticky', 's2');
  const s2 = await md5(t, disk);
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=1M count=2 conv=notrunc status=none`);
  t.not(await md5(t, disk), s2);
  const list = await snaps(t, disk);
  t.deepEqual(list.map((s) => [s.name, s.sticky, s.automatic]), [['s1', false, false], ['s2', true, false]]);
  t.true(list.every((s) => /^[0-9a-f-]{36}$/.test(s.uuid) && typeof s.timestamp === 'number' && Array.isArray(s.clones)));
  t.true(list[0].timestamp <= list[1].timestamp);

  await setx(t, disk, 'user.vdisk.rollback', 's2');
  t.is(await md5(t, disk), s2);
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(9 * 2 ** 20));
  await setx(t, disk, 'user.vdisk.rollback', 's1');
  t.is(await md5(t, disk), s1);
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(8 * 2 ** 20), 'the size as of s1');
  t.deepEqual((await snaps(t, disk)).map((s) => s.name), ['s1']);

  // a clean stop, then a mount from the backend alone: snapshot list and data come back
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=4k count=3 conv=notrunc status=none`);
  const after = await md5(t, disk);
  t.is(await m.stop(), 0);
  await rm(l.state, { recursive: true, force: true });
  m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  t.is(await md5(t, m.p('disk')), after);
  const back = await snaps(t, m.p('disk'));
  t.deepEqual(back.map((s) => [s.name, s.inBackend]), [['s1', true]]);
  await setx(t, m.p('disk'), 'user.vdisk.rollback', 's1');
  t.is(await md5(t, m.p('disk')), s1);
});

test('several snapshots, delete the middle one, the others still read right', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const disk = m.p('disk');
  await ok(t, `truncate -s 4M ${q(disk)}`);
  const sums: string[] = [];
  for (let i = 0; i < 4; i++) {
    await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=4k count=100 seek=${i * 50} conv=notrunc status=none`);
    sums.push(await md5(t, disk));
    await setx(t, disk, 'user.vdisk.snapshot', `s${i}`);
  }
  // the TLogs closed by the snapshots are uploaded in the background: each snapshot comes to be inBackend
  let list = await snaps(t, disk);
  for (let i = 0; i < 600 && !list.every((s) => s.inBackend); i++) {
    await new Promise((r) => setTimeout(r, 50));
    list = await snaps(t, disk);
  }
  t.true(list.every((s) => s.inBackend), 'every snapshot reached the backend');
  await setx(t, disk, 'user.vdisk.snapshot.delete', 's1');
  await setx(t, disk, 'user.vdisk.snapshot.delete', 's2');
  t.deepEqual((await snaps(t, disk)).map((s) => s.name), ['s0', 's3']);
  await setx(t, disk, 'user.vdisk.rollback', 's3');
  t.is(await md5(t, disk), sums[3]);
  await setx(t, disk, 'user.vdisk.rollback', 's0');
  t.is(await md5(t, disk), sums[0]);
  await setx(t, disk, 'user.vdisk.snapshot.sticky', 's0');
  t.true((await snaps(t, disk))[0].sticky);
  await setx(t, disk, 'user.vdisk.snapshot.unstick', 's0');
  t.false((await snaps(t, disk))[0].sticky);
});

test('rollback is EBUSY while another process has the vDisk open, and works once it closed', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const disk = m.p('disk');
  await ok(t, `truncate -s 1M ${q(disk)} && setfattr -n user.vdisk.snapshot -v s ${q(disk)} && echo hello | dd of=${q(disk)} conv=notrunc status=none`);
  const held = await sh(`exec 3<${q(disk)}; setfattr -n user.vdisk.rollback -v s ${q(disk)}; echo rc=$?; exec 3<&-`);
  t.regex(held.stdout + held.stderr, /Device or resource busy/);
  t.regex(held.stdout, /rc=1/);
  t.is((await ok(t, `head -c 5 ${q(disk)}`)), 'hello', 'nothing changed');
  // closed just before: the kernel's RELEASE may still be in flight, the grace covers it
  await ok(t, `exec 3<${q(disk)}; exec 3<&-; setfattr -n user.vdisk.rollback -v s ${q(disk)}`);
  t.is(await ok(t, `head -c 5 ${q(disk)} | od -An -tx1 | tr -d ' \\n'`), '0000000000');
});

test('a clone reads its parent, both diverge; parent rules: EBUSY unlink, rename keeps the clone, remounts', async (t) => {
  const l = await freshLayout(t);
  let m: MountHandle = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const p = m.p('parent');
  await ok(t, `mkdir ${q(m.p('vms'))} && truncate -s 16M ${q(p)} && dd if=/dev/urandom of=${q(p)} bs=1M count=6 conv=notrunc status=none`);
  const gold = await md5(t, p);
  await setx(t, p, 'user.vdisk.snapshot', 'gold');
  await ok(t, `dd if=/dev/urandom of=${q(p)} bs=4k count=10 conv=notrunc status=none`);
  const pNow = await md5(t, p);
  await setx(t, p, 'user.vdisk.clone', 'gold:vms/c1');
  await setx(t, p, 'user.vdisk.clone', `:${m.p('vms', 'c2')}`); // an empty NAME snapshots now; an absolute path inside the mount
  t.is(await md5(t, m.p('vms/c1')), gold);
  t.is(await md5(t, m.p('vms/c2')), pNow);
  t.deepEqual((await info(t, m.p('vms/c1'))).parent, { path: 'parent', snapshot: 'gold' });
  t.deepEqual((await info(t, p)).clones, ['vms/c1', 'vms/c2']);
  t.deepEqual((await snaps(t, p))[0].clones, ['vms/c1']);

  await ok(t, `dd if=/dev/urandom of=${q(m.p('vms/c1'))} bs=4k count=5 seek=100 conv=notrunc status=none`);
  const c1 = await md5(t, m.p('vms/c1'));
  t.not(c1, gold);
  t.is(await md5(t, p), pNow, 'the parent does not see the clone write');
  await ok(t, `dd if=/dev/urandom of=${q(p)} bs=4k count=5 seek=200 conv=notrunc status=none`);
  const pLast = await md5(t, p);
  t.is(await md5(t, m.p('vms/c1')), c1, 'the clone does not see the parent write');

  const rmParent = await sh(`rm ${q(p)}`);
  t.regex(rmParent.stderr, /Device or resource busy/);
  const del = await sh(`setfattr -n user.vdisk.snapshot.delete -v gold ${q(p)}`);
  t.regex(del.stderr, /Device or resource busy/);
  await ok(t, `mv ${q(p)} ${q(m.p('vms/base'))}`);
  t.deepEqual((await info(t, m.p('vms/c1'))).parent, { path: 'vms/base', snapshot: 'gold' });
  t.is(await md5(t, m.p('vms/c1')), c1);

  t.is(await m.stop(), 0);
  m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  t.is(await md5(t, m.p('vms/c1')), c1, 'after a clean remount');
  t.is(await m.stop(), 0);
  await rm(l.state, { recursive: true, force: true });
  m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  t.is(await md5(t, m.p('vms/c1')), c1, 'after a remount from the backend alone');
  t.is(await md5(t, m.p('vms/base')), pLast);
  t.deepEqual((await info(t, m.p('vms/base'))).clones, ['vms/c1', 'vms/c2']);
  await ok(t, `rm ${q(m.p('vms/c1'))} ${q(m.p('vms/c2'))} && rm ${q(m.p('vms/base'))}`);
});

test('a chain of clones to depth 255 works and 256 is EINVAL', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  await ok(t, `truncate -s 1M ${q(m.p('c0'))} && echo root | dd of=${q(m.p('c0'))} conv=notrunc status=none`);
  await ok(t, `cd ${q(m.mountpoint)} && for i in $(seq 1 255); do printf "$i" | dd of=c$((i-1)) bs=1 seek=$((i*8)) conv=notrunc status=none && setfattr -n user.vdisk.clone -v ":c$i" c$((i-1)) || exit 1; done`, 600_000);
  const deep = await ok(t, `head -c 8 ${q(m.p('c255'))}; dd if=${q(m.p('c255'))} bs=8 skip=255 count=1 status=none`);
  t.is(deep.replace(/\0/g, ''), 'root\n255');
  const [r] = await xattrCalls(t, [['set', m.p('c255'), 'user.vdisk.clone', ':c256']]);
  t.is(r, 'EINVAL');
  t.is((await sh(`test -e ${q(m.p('c256'))}`)).code, 1);
});

test('a template refuses writes with EROFS and is a source for clones', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const img = m.p('img');
  await ok(t, `truncate -s 8M ${q(img)} && dd if=/dev/urandom of=${q(img)} bs=1M count=3 conv=notrunc status=none`);
  await setx(t, img, 'user.vdisk.snapshot', 'a');
  await ok(t, `dd if=/dev/urandom of=${q(img)} bs=4k count=3 conv=notrunc status=none`);
  const sum = await md5(t, img);
  await setx(t, img, 'user.vdisk.template', '1');
  t.true((await info(t, img)).template);
  t.is((await snaps(t, img)).length, 1);
  const w = await sh(`dd if=/dev/zero of=${q(img)} bs=4k count=1 conv=notrunc status=none`);
  t.regex(w.stderr, /Read-only file system/);
  t.regex((await sh(`truncate -s 1M ${q(img)}`)).stderr, /Read-only file system/);
  t.is(await md5(t, img), sum);
  for (let i = 0; i < 3; i++) {
    await setx(t, img, 'user.vdisk.clone', `:vm${i}`);
    await ok(t, `dd if=/dev/urandom of=${q(m.p(`vm${i}`))} bs=4k count=2 seek=${i} conv=notrunc status=none`);
  }
  const sums = await Promise.all([0, 1, 2].map((i) => md5(t, m.p(`vm${i}`))));
  t.is(new Set([...sums, sum]).size, 4, 'each clone diverged, the template did not move');
  t.is(await md5(t, img), sum);
});

test('every bad value of section 3 gets its errno and changes nothing', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const disk = m.p('disk');
  await ok(t, `truncate -s 1M ${q(disk)} && touch ${q(m.p('taken'))} && mkdir ${q(m.p('dir'))} && echo data | dd of=${q(disk)} conv=notrunc status=none`);
  await setx(t, disk, 'user.vdisk.snapshot', 'keep');
  // inBackend may turn true meanwhile (the upload goes on): compare everything else
  const stable = (l: SnapshotInfo[]): string => JSON.stringify(l.map(({ inBackend: _, ...rest }) => rest));
  const before = stable(await snaps(t, disk));
  const sum = await md5(t, disk);
  const long = 'x'.repeat(256);
  const calls: Array<[string, string | Buffer, string]> = [
    ['user.vdisk.snapshot', '', 'EINVAL'],
    ['user.vdisk.snapshot', 'a/b', 'EINVAL'],
    ['user.vdisk.snapshot', 'a:b', 'EINVAL'],
    ['user.vdisk.snapshot', Buffer.from('a\0b'), 'EINVAL'],
    ['user.vdisk.snapshot', long, 'EINVAL'],
    ['user.vdisk.snapshot', Buffer.from([0xff, 0xfe]), 'EINVAL'],
    ['user.vdisk.snapshot', 'keep', 'EEXIST'],
    ['user.vdisk.snapshot.sticky', 'a/b', 'EINVAL'],
    ['user.vdisk.snapshot.unstick', 'nope', 'ENOENT'],
    ['user.vdisk.snapshot.delete', 'nope', 'ENOENT'],
    ['user.vdisk.snapshot.delete', '', 'EINVAL'],
    ['user.vdisk.rollback', 'nope', 'ENOENT'],
    ['user.vdisk.rollback', long, 'EINVAL'],
    ['user.vdisk.clone', 'nocolon', 'EINVAL'],
    ['user.vdisk.clone', 'keep:', 'EINVAL'],
    ['user.vdisk.clone', 'nope:c', 'ENOENT'],
    ['user.vdisk.clone', 'a/b:c', 'EINVAL'],
    ['user.vdisk.clone', 'keep:taken', 'EEXIST'],
    ['user.vdisk.clone', 'keep:dir', 'EEXIST'],
    ['user.vdisk.clone', ':taken', 'EEXIST'],
    ['user.vdisk.clone', 'keep:../outside', 'EINVAL'],
    ['user.vdisk.clone', 'keep:/tmp/outside', 'EINVAL'],
    ['user.vdisk.clone', 'keep:nodir/c', 'ENOENT'],
    ['user.vdisk.template', '0', 'EINVAL'],
    ['user.vdisk.template', 'yes', 'EINVAL'],
    ['user.vdisk.bogus', 'x', 'ENOTSUP'],
    ['user.vdisk.snapshots', 'x', 'ENOTSUP'],
  ];
  const got = await xattrCalls(t, calls.map(([n, v]) => ['set', disk, n, v]));
  t.deepEqual(got, calls.map(([, , e]) => e));
  const dirCall = await xattrCalls(t, [['set', m.p('dir'), 'user.vdisk.snapshot', 's'], ['get', m.p('dir'), 'user.vdisk.snapshots']]);
  t.deepEqual(dirCall, ['EISDIR', 'EISDIR']);
  t.is(stable(await snaps(t, disk)), before, 'the snapshot list did not change');
  // the view through Python's os.getxattr too (a value over 128 bytes: the size probe and ERANGE retry)
  for (let i = 0; i < 5; i++) await setx(t, disk, 'user.vdisk.snapshot', `more-${i}-${'y'.repeat(40)}`);
  const [viaPy] = await xattrCalls(t, [['get', disk, 'user.vdisk.snapshots']]);
  t.true(viaPy.startsWith('OK ['));
  t.is(stable(JSON.parse(viaPy.slice(3)) as SnapshotInfo[]), stable(await snaps(t, disk)));
  t.is(await md5(t, disk), sum);
  t.deepEqual((await ok(t, `ls ${q(m.mountpoint)}`)).trim().split('\n'), ['dir', 'disk', 'taken']);
  t.regex(m.log, /setxattr user\.vdisk\.snapshot failed/, 'failures are logged');
});
