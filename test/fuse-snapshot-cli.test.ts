/**
 * The CLI's snapshot verbs (DESIGN §1) on a real mount, over the management API: each does what its xattr
 * does, `--json` prints the API's answer, refusals print the API's sentence (the snapshot, the path, why)
 * with the errno name and exit 1 with nothing changed.
 */
import { CLI, freshLayout, fuseTest, ok, q, sh, startMount } from './helpers/mount.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';

const test = fuseTest();

test('snapshot create/list/sticky/delete, rollback, clone, template and info through the CLI', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const cli = (args: string): Promise<string> => ok(t, `node ${q(CLI)} ${args}`);
  const disk = m.p('disk');
  await cli(`create ${q(disk)} 4M`);
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=64k count=8 conv=notrunc status=none`);
  const s1 = await ok(t, `md5sum < ${q(disk)}`);

  const created = JSON.parse(await cli(`snapshot create ${q(disk)} s1 --json`)) as Record<string, unknown>;
  t.like(created, { name: 's1', sticky: false, automatic: false });
  t.regex(await cli(`snapshot create ${q(disk)} s2 --sticky`), /snapshot s2 of .* taken \(sticky\)/);
  const list = JSON.parse(await cli(`snapshot list ${q(disk)} --json`)) as Array<{ name: string; sticky: boolean }>;
  t.deepEqual(list.map((s) => [s.name, s.sticky]), [['s1', false], ['s2', true]]);
  t.regex(await cli(`snapshot list ${q(disk)}`), /^NAME +TIME +STICKY .*\ns1 .*\ns2 .*sticky/);
  await cli(`snapshot sticky ${q(disk)} s2 --off`);
  await cli(`snapshot sticky ${q(disk)} s1`);
  t.deepEqual((JSON.parse(await cli(`snapshot list ${q(disk)} --json`)) as Array<{ sticky: boolean }>).map((s) => s.sticky), [true, false]);
  await cli(`snapshot delete ${q(disk)} s2`);

  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=64k count=8 conv=notrunc status=none`);
  t.like(JSON.parse(await cli(`rollback ${q(disk)} s1 --json`)), { path: 'disk', size: 4 * 2 ** 20 });
  t.is(await ok(t, `md5sum < ${q(disk)}`), s1);

  // clone by a relative NEWFILE, from a named snapshot and from one taken now
  await ok(t, `mkdir ${q(m.p('vms'))}`);
  const c = JSON.parse(await ok(t, `cd ${q(m.p('vms'))} && node ${q(CLI)} clone ../disk c1 --snapshot s1 --json`)) as Record<string, unknown>;
  t.deepEqual(c.parent, { path: 'disk', snapshot: 's1' });
  await cli(`clone ${q(disk)} ${q(m.p('vms/c2'))}`);
  t.is(await ok(t, `md5sum < ${q(m.p('vms/c1'))}`), s1);
  t.is(await ok(t, `md5sum < ${q(m.p('vms/c2'))}`), s1);
  const info = JSON.parse(await cli(`info ${q(disk)} --json`)) as { clones: string[] };
  t.deepEqual(info.clones, ['vms/c1', 'vms/c2']);
  t.regex(await cli(`info ${q(m.p('vms/c1'))}`), /^parent: +disk@s1$/m);

  // refusals: errno named, exit 1, nothing changed
  const exists = await sh(`node ${q(CLI)} snapshot create ${q(disk)} s1`);
  t.is(exists.code, 1);
  t.is(exists.stderr, 'vpoolfs: snapshot "s1" of disk: snapshot s1 exists already (EEXIST)\n');
  const busy = await sh(`node ${q(CLI)} snapshot delete ${q(disk)} s1`);
  t.is(busy.stderr, 'vpoolfs: delete snapshot "s1" of disk: snapshot s1 has clones: vms/c1 (EBUSY)\n');
  const missing = await sh(`node ${q(CLI)} rollback ${q(disk)} nope`);
  t.is(missing.stderr, 'vpoolfs: roll back disk to "nope": disk has no snapshot named "nope" (ENOENT)\n');
  const outside = await sh(`node ${q(CLI)} clone ${q(disk)} ${q(l.root + '/elsewhere')}`);
  t.is(outside.code, 1);
  t.regex(outside.stderr, /^vpoolfs: clone .*disk to .*elsewhere: a clone lives on the vPool of its parent .*: not on a mounted vPool/);
  const onto = await sh(`node ${q(CLI)} clone ${q(disk)} ${q(m.p('vms/c1'))} --snapshot s1`);
  t.is(onto.stderr, 'vpoolfs: clone disk@s1 to vms/c1: vms/c1 exists already (EEXIST)\n');
  t.is((JSON.parse(await cli(`snapshot list ${q(disk)} --json`)) as unknown[]).length, 2, 's1 and the snapshot the second clone took');

  // template
  t.like(JSON.parse(await cli(`template ${q(m.p('vms/c2'))} --json`)), { path: 'vms/c2', template: true });
  t.regex((await sh(`dd if=/dev/zero of=${q(m.p('vms/c2'))} bs=4k count=1 conv=notrunc status=none`)).stderr, /Read-only file system/);
  t.regex(await cli(`info ${q(m.p('vms/c2'))}`), /^template: +yes \(read-only\)$/m);
});
