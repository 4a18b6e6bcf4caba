/**
 * Templates and clones the way a hypervisor uses them: a guest image written by `qemu-img convert` into a
 * vDisk, made a template, cloned ten times; each clone is written by `qemu-io` and diverges on its own, the
 * template and the other clones do not move.
 */
import path from 'node:path';
import { freshLayout, fuseTest, ok, q, startMount } from './helpers/mount.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';

const test = fuseTest();
const MiB = 2 ** 20;

test('ten clones of one qemu-img guest image, each diverging', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const src = path.join(l.root, 'guest.qcow2');
  const img = m.p('golden.raw');
  await ok(t, `qemu-img create -q -f qcow2 ${q(src)} 64M`);
  await ok(t, `qemu-io -f qcow2 -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 33M 512k' -c 'write -P 0x11 63M 4k' ${q(src)}`);
  await ok(t, `qemu-img convert -f qcow2 -O raw ${q(src)} ${q(img)}`);
  await ok(t, `setfattr -n user.vdisk.template -v 1 ${q(img)}`);
  const golden = await ok(t, `sha256sum < ${q(img)}`);
  for (let i = 0; i < 10; i++) await ok(t, `setfattr -n user.vdisk.clone -v ${q(`:vm${i}.raw`)} ${q(img)}`);
  for (let i = 0; i < 10; i++) {
    const pat = `0x${(0x20 + i).toString(16)}`;
    await ok(t, `qemu-io -f raw -t none -c 'write -P ${pat} ${40 * MiB + i * 64 * 1024} 64k' -c 'write -P ${pat} 0 4k' ${q(m.p(`vm${i}.raw`))}`);
  }
  for (let i = 0; i < 10; i++) {
    const pat = `0x${(0x20 + i).toString(16)}`;
    const other = 40 * MiB + ((i + 1) % 10) * 64 * 1024;
    const out = await ok(
      t,
      `qemu-io -f raw -r -c 'read -P ${pat} 0 4k' -c 'read -P 0xab 4k 1020k' -c 'read -P 0xcd 33M 512k' -c 'read -P 0x11 63M 4k' ` +
        `-c 'read -P ${pat} ${40 * MiB + i * 64 * 1024} 64k' -c 'read -P 0 ${other} 64k' ${q(m.p(`vm${i}.raw`))}`,
    );
    t.notRegex(out, /verification failed|error/i, `vm${i}`);
  }
  t.is(await ok(t, `sha256sum < ${q(img)}`), golden, 'the template did not move');
  const info = JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(img)}`)) as { clones: string[] };
  t.is(info.clones.length, 10);
});
