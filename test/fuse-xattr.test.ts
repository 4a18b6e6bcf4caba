/**
 * Extended attributes on a real mount: plain `user.*` attributes round trip with setfattr/getfattr and
 * Python's os.getxattr (a 300-byte value: the size probe and ERANGE retry must work), list and remove;
 * the `user.vdisk.info` and `user.vdisk.snapshots` views answer JSON and are listed; an unknown `user.vdisk.*` name is ENOTSUP;
 * other namespaces answer ENODATA.
 */
import { freshLayout, fuseTest, ok, q, sh, startMount } from './helpers/mount.js';

const test = fuseTest();

test('plain user.* attributes round trip; user.vdisk.info is a view; unknown user.vdisk.* is ENOTSUP; security.* is ENODATA', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const disk = m.p('disk');
  await ok(t, `truncate -s 1G ${q(disk)} && mkdir ${q(m.p('dir'))}`);

  await ok(t, `setfattr -n user.color -v blue ${q(disk)}`);
  t.is(await ok(t, `getfattr -n user.color --only-values ${q(disk)}`), 'blue');
  await ok(t, `setfattr -n user.color -v green ${q(disk)}`);
  t.is(await ok(t, `getfattr -n user.color --only-values ${q(disk)}`), 'green');
  await ok(t, `setfattr -n user.on.dir -v 1 ${q(m.p('dir'))}`);
  t.is(await ok(t, `getfattr -n user.on.dir --only-values ${q(m.p('dir'))}`), '1');

  // a 300-byte value through Python: a 128-byte first try must get ERANGE, not EIO
  const py = await ok(
    t,
    `python3 - ${q(disk)} <<'EOF'
import os, sys
p = sys.argv[1]
v = bytes(range(256)) + b'x' * 44
os.setxattr(p, 'user.big', v)
got = os.getxattr(p, 'user.big')
print(len(got), got == v)
names = os.listxattr(p)
print(sorted(n for n in names if not n.startswith('user.vdisk.')))
print('user.vdisk.info' in names, 'user.vdisk.snapshots' in names)
EOF`,
  );
  t.is(py.trim(), "300 True\n['user.big', 'user.color']\nTrue True");
  t.regex(await ok(t, `getfattr -d ${q(disk)}`), /user\.color="green"/);

  // XATTR_CREATE on an existing name, XATTR_REPLACE on a missing one, remove
  const flags = await ok(
    t,
    `python3 - ${q(disk)} <<'EOF'
import os, sys, errno
p = sys.argv[1]
def name(f):
    try:
        f(); return 'OK'
    except OSError as e:
        return errno.errorcode[e.errno]
print(name(lambda: os.setxattr(p, 'user.color', b'x', os.XATTR_CREATE)))
print(name(lambda: os.setxattr(p, 'user.nope', b'x', os.XATTR_REPLACE)))
print(name(lambda: os.removexattr(p, 'user.color')))
print(name(lambda: os.getxattr(p, 'user.color')))
print(name(lambda: os.removexattr(p, 'user.color')))
print(name(lambda: os.getxattr(p, 'security.capability')))
print(name(lambda: os.getxattr(p, 'trusted.x')))
print(name(lambda: os.setxattr(p, 'user.vdisk.bogus', b'snap1')))
print(name(lambda: os.getxattr(p, 'user.vdisk.info')))
print(name(lambda: os.getxattr(p, 'user.vdisk.bogus')))
print(name(lambda: os.setxattr(p, 'user.vdisk.info', b'{}')))
print(name(lambda: os.removexattr(p, 'user.vdisk.info')))
print(name(lambda: os.getxattr(os.path.dirname(p) + '/dir', 'user.vdisk.info')))
EOF`,
  );
  t.deepEqual(flags.trim().split('\n'), ['EEXIST', 'ENODATA', 'OK', 'ENODATA', 'ENODATA', 'ENODATA', 'ENODATA', 'ENOTSUP', 'OK', 'ENOTSUP', 'ENOTSUP', 'ENOTSUP', 'EISDIR']);
  const set = await sh(`setfattr -n user.vdisk.bogus -v s1 ${q(disk)}`);
  t.regex(set.stderr, /Operation not supported/);
  t.regex(m.log, /setxattr user\.vdisk\.bogus failed/, 'the refusal is logged');

  // the info view (DESIGN §3) of a fresh 1 GiB vDisk
  const info = JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(disk)}`)) as Record<string, unknown>;
  t.like(info, { size: 2 ** 30, template: false, parent: null, clones: [], dtl: { mode: 'none', state: 'ok_standalone', server: null } });
  for (const k of ['id', 'allocatedBytes', 'backendBytes', 'dirtyBytes', 'router']) t.true(k in info, k);

  // the snapshot commands answer (their behaviour is tested in fuse-snapshot.test.ts); nothing is stored as a plain attribute
  await ok(t, `setfattr -n user.vdisk.snapshot -v s1 ${q(disk)}`);
  const snaps = JSON.parse(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(disk)}`)) as Array<{ name: string }>;
  t.deepEqual(snaps.map((s) => s.name), ['s1']);
  t.notRegex(await ok(t, `getfattr -d ${q(disk)}`), /user\.vdisk\.snapshot=/, "the command is not kept as a plain attribute");

  // writes still work after the kernel started asking for security.capability
  await ok(t, `dd if=/dev/zero of=${q(disk)} bs=4k count=4 conv=notrunc status=none`);
});

test('plain attributes survive a clean remount', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  await ok(t, `touch ${q(m.p('d'))} && setfattr -n user.owner -v alice ${q(m.p('d'))}`);
  t.is(await m.stop(), 0);
  const m2 = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  t.is(await ok(t, `getfattr -n user.owner --only-values ${q(m2.p('d'))}`), 'alice');
});
