/**
 * DESIGN §2, "everything needed to bring the vPool up on a new router is in the backend", through real
 * mounts: a tree of directories, a sparse 20 GiB vDisk written past 4 GiB, a renamed file with its mode,
 * a plain user.* attribute; a clean stop, the state directory removed, a mount from `backend` alone: the
 * listing, sizes, modes, bytes and attribute are the same. Shared by the file:// and the S3 tests.
 */
import type { ExecutionContext } from 'ava';
import { rm } from 'node:fs/promises';
import { ok, q, startMount } from './mount.js';

export async function treeComesBackFromBackend(t: ExecutionContext, l: { root: string; mountpoint: string; state: string }, backend: string): Promise<void> {
  const opts = { mountpoint: l.mountpoint, state: l.state, backend };
  const m = await startMount(t, opts);
  await ok(
    t,
    `cd ${q(m.mountpoint)} && mkdir -p vms/web/disks empty/dir && truncate -s 20G vms/web/disks/root.raw && ` +
      `head -c 3M /dev/urandom > ${q(l.root)}/data && dd if=${q(l.root)}/data of=vms/web/disks/root.raw bs=1M seek=4097 conv=notrunc status=none && ` +
      `cp ${q(l.root)}/data vms/plain && chmod 640 vms/plain && setfattr -n user.role -v web vms/web/disks/root.raw && ` +
      `mv vms/plain vms/renamed && touch empty/zero`,
  );
  const before = await ok(t, `cd ${q(m.mountpoint)} && find . | sort && stat -c '%n %s %a' $(find . -type f | sort)`);
  t.is(await m.stop(), 0, m.log);

  await rm(l.state, { recursive: true, force: true });
  const m2 = await startMount(t, opts);
  const after = await ok(t, `cd ${q(m2.mountpoint)} && find . | sort && stat -c '%n %s %a' $(find . -type f | sort)`);
  t.is(after, before);
  await ok(t, `cd ${q(m2.mountpoint)} && dd if=vms/web/disks/root.raw bs=1M skip=4097 count=3 status=none | cmp - ${q(l.root)}/data && cmp vms/renamed ${q(l.root)}/data`);
  t.is(await ok(t, `getfattr -n user.role --only-values ${q(m2.p('vms/web/disks/root.raw'))}`), 'web');
}
