/**
 * Hypervisor tooling on a real mount: `qemu-img convert` of a qcow2 image into a raw vDisk and back
 * (checksums equal), and `qemu-io` writes and reads at offsets beyond 4 GiB, buffered and O_DIRECT
 * (cache=none), read back by a fresh qemu-io process.
 */
import path from 'node:path';
import { freshLayout, fuseTest, ok, q, sh, startMount } from './helpers/mount.js';

const test = fuseTest();

test('qemu-img convert qcow2 → raw vDisk → qcow2 keeps every byte', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const src = path.join(l.root, 'src.qcow2');
  const back = path.join(l.root, 'back.qcow2');
  await ok(t, `qemu-img create -q -f qcow2 ${q(src)} 64M`);
  await ok(t, `qemu-io -f qcow2 -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 33M 512k' -c 'write -P 0x11 63M 4k' ${q(src)}`);
  await ok(t, `qemu-img convert -f qcow2 -O raw ${q(src)} ${q(m.p('vm.raw'))}`);
  t.is((await ok(t, `stat -c %s ${q(m.p('vm.raw'))}`)).trim(), String(64 * 2 ** 20));
  await ok(t, `qemu-img convert -f raw -O qcow2 ${q(m.p('vm.raw'))} ${q(back)}`);
  const sums = await ok(
    t,
    `qemu-img convert -f qcow2 -O raw ${q(src)} ${q(l.root)}/a.raw && qemu-img convert -f qcow2 -O raw ${q(back)} ${q(l.root)}/b.raw && ` +
      `sha256sum < ${q(l.root)}/a.raw && sha256sum < ${q(m.p('vm.raw'))} && sha256sum < ${q(l.root)}/b.raw`,
  );
  const [a, b, c] = sums.trim().split('\n');
  t.is(a, b, 'the raw vDisk has the image’s bytes');
  t.is(a, c, 'converted back, the image is the same');
  const cmp = await sh(`qemu-img compare -q ${q(src)} ${q(back)}`);
  t.is(cmp.code, 0, cmp.stdout + cmp.stderr);
  // thin: only the written ranges use space (qemu-img skips zeros)
  const kib = Number((await ok(t, `du -k ${q(m.p('vm.raw'))} | cut -f1`)).trim());
  t.true(kib < 4096, `du of the raw vDisk: ${kib} KiB`);
});

test('qemu-io writes and reads beyond 4 GiB, buffered and with cache=none', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const disk = m.p('big.raw');
  await ok(t, `truncate -s 8G ${q(disk)}`);
  await ok(t, `qemu-io -f raw -c 'write -P 0x5a 5G 1M' -c 'write -P 0x33 4294965248 4096' ${q(disk)}`);
  await ok(t, `qemu-io -f raw -t none -c 'write -P 0x77 7G 256k' -c 'write -P 0x78 6442450944 4096' ${q(disk)}`);
  const out = await ok(
    t,
    `qemu-io -f raw -r -c 'read -P 0x5a 5G 1M' -c 'read -P 0x33 4294965248 4096' -c 'read -P 0 4100M 64k' ${q(disk)} && ` +
      `qemu-io -f raw -r -t none -c 'read -P 0x77 7G 256k' -c 'read -P 0x78 6442450944 4096' -c 'read -P 0x5a 5G 1M' ${q(disk)}`,
  );
  t.notRegex(out, /verification failed/i);
  t.is((await ok(t, `stat -c %s ${q(disk)}`)).trim(), String(8 * 2 ** 30));
});
