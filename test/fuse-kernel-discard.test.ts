/**
 * Kernel engine only (fuse-native has no fallocate; npm test runs fuse-kernel-* files once, on the kernel engine).
 * Discard through a real mount (fuse/ops-io.ts fallocate → VDisk.discard): util-linux `fallocate
 * --punch-hole` and `--zero-range` on a vDisk full of random data. The ranges read as zeros, `du` drops
 * by exactly the whole clusters freed, `qemu-img map` shows the punched hole; and it stays so after a
 * kill -9 of the daemon and a mount on the same state (local restart), and after a mount on an empty
 * state directory (rebuild from the backend). ZERO_RANGE without KEEP_SIZE past the end grows the vDisk.
 * And what a guest's TRIM becomes in QEMU (discard=unmap): qemu-io `discard` and `write -z -u`.
 */
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { freshLayout, fuseTest, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';

const test = fuseTest();
const MiB = 2 ** 20;
const CS = 4096;

/** Bytes `du` counts for `file` (st_blocks × 512). */
async function du(t: ExecutionContext, file: string): Promise<number> {
  return Number((await ok(t, `du -B1 ${q(file)}`)).split('\t')[0]);
}

/** The file's bytes, read by `cat` in a child (never a synchronous read of the mount from this process's loop). */
async function contents(t: ExecutionContext, file: string): Promise<Buffer> {
  return Buffer.from(await ok(t, `base64 -w0 ${q(file)}`), 'base64');
}

test('fallocate --punch-hole and --zero-range free clusters, read as zeros, and stay so after kill -9 and a rebuild from the backend', async (t) => {
  const l = await freshLayout(t);
  const mount = () => startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  let m: MountHandle = await mount();
  const disk = m.p('disk.raw');
  const src = path.join(l.root, 'src.bin');
  const want = randomBytes(16 * MiB);
  fs.writeFileSync(src, want);
  await ok(t, `truncate -s ${32 * MiB} ${q(disk)} && dd if=${q(src)} of=${q(disk)} bs=1M conv=notrunc,fsync status=none`);
  const full = Buffer.concat([want, Buffer.alloc(16 * MiB)]);
  t.is(await du(t, disk), 16 * MiB, 'du: the written 16 MiB');

  // punch 1 MiB .. 5 MiB + 100 (the last cluster is zeroed in part, stays allocated): 1024 clusters freed
  await ok(t, `fallocate --punch-hole --offset ${MiB} --length ${4 * MiB + 100} ${q(disk)}`);
  full.fill(0, MiB, 5 * MiB + 100);
  // zero 8 MiB + 1000 .. 10 MiB + 1000: clusters 2049..2559 freed (511), the edges zeroed in part
  await ok(t, `fallocate --zero-range --offset ${8 * MiB + 1000} --length ${2 * MiB} ${q(disk)}`);
  full.fill(0, 8 * MiB + 1000, 10 * MiB + 1000);
  // a punch past the end is cut to the size; it changes nothing there
  await ok(t, `fallocate --punch-hole --offset ${30 * MiB} --length ${8 * MiB} ${q(disk)}`);
  const freed = (1024 + 511) * CS;
  const check = async (where: string) => {
    t.is((await fs.promises.stat(disk)).size, 32 * MiB, `${where}: the size is kept`);
    t.true((await contents(t, disk)).equals(full), `${where}: every byte as expected (zeros in the discarded ranges)`);
    t.is(await du(t, disk), 16 * MiB - freed, `${where}: du dropped by the clusters freed`);
    const map = JSON.parse(await ok(t, `qemu-img map -f raw --output=json ${q(disk)}`)) as { start: number; length: number; data: boolean }[];
    t.true(map.some((e) => !e.data && e.start === MiB && e.length === 4 * MiB), `${where}: qemu-img map shows the punched hole: ${JSON.stringify(map)}`);
    t.true(map.some((e) => !e.data && e.start === 8 * MiB + CS && e.length === 511 * CS), `${where}: and the zeroed range`);
  };
  await check('at once');

  await m.kill9();
  m = await mount(); // local restart over the stale mount
  await check('after kill -9 and a local restart');

  t.is(await m.stop(), 0, 'clean stop: everything in the backend');
  fs.rmSync(l.state, { recursive: true, force: true });
  m = await mount(); // rebuild from the backend
  await check('after a rebuild from the backend');

  // ZERO_RANGE without KEEP_SIZE past the end grows the vDisk, the new range reads as zeros
  await ok(t, `fallocate --zero-range --offset ${32 * MiB - 10} --length 100 ${q(disk)}`);
  t.is((await fs.promises.stat(disk)).size, 32 * MiB + 90, 'zero-range grew the vDisk');
  t.true((await contents(t, disk)).equals(Buffer.concat([full, Buffer.alloc(90)])), 'and reads zeros there');
  // other modes (collapse, insert) are not supported
  t.not((await sh(`fallocate --collapse-range --offset 0 --length ${CS} ${q(disk)}`)).code, 0, 'collapse-range is refused');
  await m.stop();
});

test('QEMU\'s discard and write-zeroes with unmap (a guest\'s TRIM with discard=unmap) free the clusters through the mount', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const disk = m.p('guest.raw');
  await ok(t, `truncate -s ${8 * MiB} ${q(disk)}`);
  await ok(t, `qemu-io -f raw -c 'write -P 0x33 0 4M' ${q(disk)}`);
  t.is(await du(t, disk), 4 * MiB);
  await ok(t, `qemu-io -f raw -d unmap -c 'discard 1M 2M' -c 'write -z -u 3M 64k' ${q(disk)}`);
  t.is(await du(t, disk), 4 * MiB - 2 * MiB - 64 * 1024, 'du: the discarded and the zeroed-with-unmap ranges are freed');
  await ok(t, `qemu-io -f raw -c 'read -P 0 1M 2M' -c 'read -P 0 3M 64k' -c 'read -P 0x33 0 1M' -c 'read -P 0x33 ${3 * MiB + 64 * 1024} ${MiB - 64 * 1024}' ${q(disk)}`);
  const map = JSON.parse(await ok(t, `qemu-img map -f raw --output=json ${q(disk)}`)) as { start: number; length: number; data: boolean }[];
  t.deepEqual(map.filter((e) => e.data).map((e) => [e.start, e.length]), [[0, MiB], [3 * MiB + 64 * 1024, MiB - 64 * 1024]], 'qemu-img map: data only where it was kept');
  await m.stop();
});
