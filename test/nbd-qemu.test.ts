/**
 * The NBD server (nbd/) with QEMU's and libnbd's own tools against a real daemon: a qcow2 guest image
 * converted into an export and back out (qemu-img compare equal, holes kept), qemu-img map and nbdinfo
 * --map showing the holes, qemu-io pattern writes and reads, nbdcopy, the same vDisk through the mount
 * and through NBD at once, and rollback refused (EBUSY) while an NBD client holds the vDisk.
 */
import { mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fuseTest } from './helpers/mount.js';
import { nbdPython, nbdPythonOk, ok, q, sh, startNbdMount } from './helpers/nbd.js';

const test = fuseTest();
const MiB = 2 ** 20;

interface MapEntry { start: number; length: number; data: boolean; zero: boolean }
/** The vDisk's allocated bytes from its user.vdisk.info view (st_blocks may be cached by the kernel). */
async function allocated(file: string): Promise<number> {
  const r = await sh(`getfattr --only-values -n user.vdisk.info ${q(file)}`);
  return (JSON.parse(r.stdout) as { allocatedBytes: number }).allocatedBytes;
}
const dataRanges = (map: MapEntry[]) => map.filter((e) => e.data).map((e) => [e.start, e.start + e.length]);

test('qemu-img convert a qcow2 image in and out, compare equal, holes kept; nbdinfo --map and nbdcopy agree', async (t) => {
  const n = await startNbdMount(t);
  const src = path.join(n.layout.root, 'guest.qcow2');
  await ok(t, `qemu-img create -q -f qcow2 ${q(src)} 64M`);
  await ok(t, `qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 30M 2M' -c 'write -P 0x33 63M 4k' ${q(src)}`);
  await mkdir(n.m.p('vms', 'web'), { recursive: true });
  await truncate(n.m.p('vms', 'web', 'root.img'), 64 * MiB).catch(async () => {
    await writeFile(n.m.p('vms', 'web', 'root.img'), '');
    await truncate(n.m.p('vms', 'web', 'root.img'), 64 * MiB);
  });
  const uri = n.uri('vms/web/root.img');
  await ok(t, `qemu-img convert -n -f qcow2 -O raw ${q(src)} ${q(uri)}`);
  t.regex(await ok(t, `qemu-img compare -f qcow2 -F raw ${q(src)} ${q(uri)}`), /identical/);

  // the holes of the qcow2 image stay holes in the vDisk
  const map = JSON.parse(await ok(t, `qemu-img map -f raw --output=json ${q(uri)}`)) as MapEntry[];
  t.deepEqual(dataRanges(map), [[0, MiB], [30 * MiB, 32 * MiB], [63 * MiB, 63 * MiB + 4096]]);
  t.true(map.filter((e) => !e.data).every((e) => e.zero), 'holes read as zero');
  const info = await ok(t, `nbdinfo --map ${q(uri)}`);
  const lines = info.trim().split('\n').map((l) => l.trim().split(/\s+/));
  t.deepEqual(lines.filter((l) => l[2] === '0').map((l) => [Number(l[0]), Number(l[0]) + Number(l[1])]), dataRanges(map));
  t.true(lines.filter((l) => l[2] !== '0').every((l) => l[3] === 'hole,zero'), info);
  t.is(await allocated(n.m.p('vms', 'web', 'root.img')), 3 * MiB + 4096, 'only the written clusters are allocated');

  // and back out: a qcow2 from the export, and a raw copy by nbdcopy, both equal to the source
  const back = path.join(n.layout.root, 'back.qcow2');
  await ok(t, `qemu-img convert -f raw -O qcow2 ${q(uri)} ${q(back)}`);
  t.regex(await ok(t, `qemu-img compare ${q(src)} ${q(back)}`), /identical/);
  const copy = path.join(n.layout.root, 'copy.raw');
  await ok(t, `nbdcopy ${q(uri)} ${q(copy)}`);
  t.regex(await ok(t, `qemu-img compare -f qcow2 -F raw ${q(src)} ${q(copy)}`), /identical/);
  // nbdcopy into another export, then nbdcopy --destination-is-zero keeps it sparse
  await writeFile(n.m.p('copy.img'), '');
  await truncate(n.m.p('copy.img'), 64 * MiB);
  await ok(t, `nbdcopy --destination-is-zero ${q(uri)} ${q(n.uri('copy.img'))}`);
  t.true((await readFile(n.m.p('copy.img'))).equals(await readFile(copy)), 'nbdcopy export to export');
  t.is(await allocated(n.m.p('copy.img')), 3 * MiB + 4096);
});

test('qemu-io patterns through NBD, the same vDisk seen through the mount at once', async (t) => {
  const n = await startNbdMount(t);
  await writeFile(n.m.p('disk.img'), '');
  await truncate(n.m.p('disk.img'), 16 * MiB);
  const uri = n.uri('disk.img');
  await ok(t, `qemu-io -f raw -c 'write -P 0xab 1M 64k' -c 'write -P 0xcd 5M 4k' -c 'write -z 1M 4k' -c 'flush' ${q(uri)}`);
  await ok(t, `qemu-io -f raw -c 'read -P 0 1M 4k' -c 'read -P 0xab 1052672 61440' -c 'read -P 0xcd 5M 4k' -c 'read -P 0 0 1M' ${q(uri)}`);
  // the mount sees what NBD wrote
  const file = await readFile(n.m.p('disk.img'));
  t.true(file.subarray(MiB, MiB + 4096).equals(Buffer.alloc(4096)));
  t.true(file.subarray(MiB + 4096, MiB + 65536).equals(Buffer.alloc(61440, 0xab)));
  t.true(file.subarray(5 * MiB, 5 * MiB + 4096).equals(Buffer.alloc(4096, 0xcd)));
  // ... and NBD sees what the mount writes while an NBD client is connected to the same vDisk
  const out = await nbdPythonOk(t, `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDWR)
for i in range(50):
    off = (i * 7919 % 4000) * 4096
    os.pwrite(fd, bytes([i]) * 4096, off)            # through the mount
    assert h.pread(4096, off) == bytes([i]) * 4096, ('mount->nbd', i)
    h.pwrite(bytes([255 - i]) * 4096, off)           # through NBD
    # a new open: an open file of the mount keeps its page cache (docs/nbd.md, "Limits")
    rd = os.open(sys.argv[2], os.O_RDONLY)
    assert os.pread(rd, 4096, off) == bytes([255 - i]) * 4096, ('nbd->mount', i)
    os.close(rd)
os.close(fd)
h.shutdown()
print('ok')
`, [uri, n.m.p('disk.img')]);
  t.is(out.trim(), 'ok');
});

test('rollback answers EBUSY while an NBD client holds the vDisk, and works once it has gone', async (t) => {
  const n = await startNbdMount(t);
  const disk = n.m.p('vm.img');
  await writeFile(disk, Buffer.alloc(65536, 1));
  await ok(t, `setfattr -n user.vdisk.snapshot -v s1 ${q(disk)}`);
  await ok(t, `qemu-io -f raw -c 'write -P 2 0 64k' ${q(n.uri('vm.img'))}`);
  // a client that stays connected while its flag file exists
  const flag = path.join(n.layout.root, 'hold');
  await writeFile(flag, '');
  const before = (n.m.log.match(/NBD client connected/g) ?? []).length;
  const holder = nbdPython(`
import time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
while os.path.exists(sys.argv[2]):
    time.sleep(0.05)
h.shutdown()
`, [n.uri('vm.img'), flag]);
  while ((n.m.log.match(/NBD client connected/g) ?? []).length === before) await new Promise((r) => setTimeout(r, 50));
  const busy = await sh(`setfattr -n user.vdisk.rollback -v s1 ${q(disk)}`);
  t.not(busy.code, 0);
  t.regex(busy.stderr, /busy/i);
  t.true((await readFile(disk)).equals(Buffer.alloc(65536, 2)), 'nothing rolled back');
  await rm(flag);
  t.is((await holder).code, 0);
  // its export is closed once the daemon has seen the disconnect
  while ((n.m.log.match(/NBD client disconnected/g) ?? []).length <= before) await new Promise((r) => setTimeout(r, 50));
  await ok(t, `setfattr -n user.vdisk.rollback -v s1 ${q(disk)}`);
  t.true((await readFile(disk)).equals(Buffer.alloc(65536, 1)), 'rolled back once the client has gone');
});
