/**
 * Bad input on a real mount gets a clear errno and the daemon keeps serving: names over 255 bytes
 * (ENAMETOOLONG), sizes and writes past 64 TiB (EFBIG), a rename out of the vPool (EXDEV), special
 * files (EPERM), unlink of a directory / rmdir of a file.
 */
import { freshLayout, fuseTest, ok, q, startMount } from './helpers/mount.js';

const test = fuseTest();

test('bad names, sizes, offsets and renames fail cleanly and the mount keeps serving', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  await ok(t, `truncate -s 1M ${q(m.p('ok'))} && mkdir ${q(m.p('d'))}`);
  const out = await ok(
    t,
    `python3 - ${q(m.mountpoint)} ${q(l.root)} <<'EOF'
import os, sys, errno
mnt, root = sys.argv[1], sys.argv[2]
def name(f):
    try:
        r = f(); return 'OK' if r is None else str(r)
    except OSError as e:
        return errno.errorcode[e.errno]
long = 'x' * 256
T64 = 64 * 2**40
print(name(lambda: os.close(os.open(os.path.join(mnt, long), os.O_CREAT | os.O_RDWR))))
print(name(lambda: os.mkdir(os.path.join(mnt, long))))
print(name(lambda: os.rename(os.path.join(mnt, 'ok'), os.path.join(mnt, long))))
print(name(lambda: os.close(os.open(os.path.join(mnt, 'y' * 255), os.O_CREAT | os.O_RDWR))))
fd = os.open(os.path.join(mnt, 'ok'), os.O_RDWR)
print(name(lambda: os.pwrite(fd, b'z' * 4096, T64)))
print(name(lambda: os.pwrite(fd, b'z' * 4096, T64 - 2048)))
print(name(lambda: os.ftruncate(fd, T64 + 1)))
print(name(lambda: os.ftruncate(fd, T64)))
print(name(lambda: os.pwrite(fd, b'z' * 4096, T64 - 4096)))
os.close(fd)
print(name(lambda: os.truncate(os.path.join(mnt, 'ok'), T64 + 4096)))
print(name(lambda: os.rename(os.path.join(mnt, 'ok'), os.path.join(root, 'outside'))))
print(name(lambda: os.mkfifo(os.path.join(mnt, 'fifo'))))
print(name(lambda: os.unlink(os.path.join(mnt, 'd'))))
print(name(lambda: os.rmdir(os.path.join(mnt, 'ok'))))
print(name(lambda: os.mkdir(os.path.join(mnt, 'd'))))
print(name(lambda: os.rename(os.path.join(mnt, 'd'), os.path.join(mnt, 'd', 'inside'))))
EOF`,
  );
  t.deepEqual(out.trim().split('\n'), [
    'ENAMETOOLONG', // create
    'ENAMETOOLONG', // mkdir
    'ENAMETOOLONG', // rename to a long name
    'OK', // 255 bytes is fine
    'EFBIG', // write at 64 TiB
    '2048', // a write straddling 64 TiB is cut short at the limit (the kernel splits it by page)
    'EFBIG', // size past 64 TiB
    'OK', // exactly 64 TiB
    '4096', // the last cluster
    'EFBIG', // truncate past 64 TiB
    'EXDEV', // rename out of the vPool
    'EPERM', // no special files
    'EISDIR', // unlink of a directory
    'ENOTDIR', // rmdir of a file
    'EEXIST', // mkdir over an existing name
    'EINVAL', // a directory into itself
  ]);
  // still serving, the 64 TiB vDisk is thin
  t.is((await ok(t, `stat -c %s ${q(m.p('ok'))}`)).trim(), String(64 * 2 ** 40));
  t.is((await ok(t, `ls ${q(m.mountpoint)} | wc -l`)).trim(), '3');
  t.true(m.alive);
});
