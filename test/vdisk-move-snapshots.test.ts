/**
 * Snapshots and rollback of a delegated vDisk through real daemons, mounts and etcd (docs/cluster.md, "Ownership
 * per vDisk"): three routers — ra the vPool's owner, rb and rc its followers — and `/disk` moved to rb and back,
 * twice. The snapshot xattrs of DESIGN §3 (`user.vdisk.snapshot`, `.sticky`, `.unstick`, `.delete`,
 * `user.vdisk.rollback`, the views `user.vdisk.snapshots` and `user.vdisk.info`) are set through every router's
 * mount while rb serves the vDisk, and answered by rb (its log); snapshots taken on either side are listed
 * everywhere after each move; rollbacks on rb to a snapshot taken on ra, and on ra to snapshots taken on rb,
 * after a scrub and a gc on ra. Seeded random writes through random mounts against a reference copy: after each
 * step every byte of the vDisk through all three mounts, and each rollback gives back exactly the reference as it
 * was at that snapshot. What needs the tree (a clone, a template) answers EBUSY on the delegated vDisk.
 * `VPOOLFS_SEED` replays a run.
 */
import { open, readFile, stat } from 'node:fs/promises';
import { CLI, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { seeded } from './helpers/seed.js';
import { xattrCalls } from './helpers/snapshot-xattr.js';
import { until } from './helpers/until.js';

const test = fuseTest();
const SIZE = 16 * 2 ** 20;

interface SnapRow { name: string; sticky: boolean; inBackend: boolean; clones: string[] }

test('snapshots and rollback of a delegated vDisk through every router\'s mount, across moves both ways and a scrub: every byte', async (t) => {
  const { int } = seeded(t);
  const c = await cluster(t);
  const config = { autoMove: false, schedule: { snapshot: null, retention: null, scrub: null } };
  const a = await startMount(t, c.router('ra', [], config));
  await ok(t, `truncate -s ${SIZE} ${q(a.p('disk'))}`);
  const [b, cc] = await Promise.all([startMount(t, c.router('rb', [], config)), startMount(t, c.router('rc', [], config))]);
  const mounts: Record<string, MountHandle> = { ra: a, rb: b, rc: cc };
  const all = [a, b, cc];
  const ref = Buffer.alloc(SIZE + 4 * 2 ** 20);
  let size = SIZE;
  const snaps = new Map<string, { data: Buffer; size: number }>();

  const move = async (to: string) => {
    const r = await sh(`node ${q(CLI)} move ${q(a.p('disk'))} --to ${to} --registry ${q(c.etcd.url)}`);
    t.is(r.code, 0, r.stderr + r.stdout);
    t.regex(r.stdout, new RegExp(`^Moved: vDisk /disk is served by router '${to}'`, 'm'));
  };
  /** `n` writes of random bytes at random offsets, each through a random router's mount. */
  const writes = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const len = 1 + int(65536);
      const off = int(size - len);
      const data = Buffer.from(Array.from({ length: len }, () => int(256)));
      const m = all[int(3)];
      const fh = await open(m.p('disk'), 'r+');
      try {
        await fh.write(data, 0, len, off);
      } finally {
        await fh.close();
      }
      data.copy(ref, off);
    }
  };
  const setx = (m: MountHandle, name: string, value: string) => ok(t, `setfattr -n ${name} -v ${q(value)} ${q(m.p('disk'))}`);
  const view = async <T>(m: MountHandle, name: string): Promise<T> => JSON.parse(await ok(t, `getfattr -n ${name} --only-values ${q(m.p('disk'))}`)) as T;
  const snapshot = async (m: MountHandle, name: string, sticky = false) => {
    await setx(m, sticky ? 'user.vdisk.snapshot.sticky' : 'user.vdisk.snapshot', name);
    snaps.set(name, { data: Buffer.from(ref.subarray(0, size)), size });
  };
  const rollback = async (m: MountHandle, name: string) => {
    await setx(m, 'user.vdisk.rollback', name);
    const s = snaps.get(name)!;
    size = s.size;
    ref.fill(0);
    s.data.copy(ref);
  };
  /** Every byte of the vDisk through each mount against the reference. */
  const everyByte = async (what: string) => {
    for (const m of all) {
      // a change made through another router (a rollback, a truncate) reaches this kernel's cached size within
      // its attribute timeout (the kernel engine's 1 s): wait for it, then read (each open drops the cached pages)
      await until(`${what}: the size ${size} through ${m.mountpoint}`, async () => (await stat(m.p('disk'))).size === size);
      const got = await readFile(m.p('disk'));
      t.is(got.length, size, `${what}: the size through ${m.mountpoint}`);
      const want = ref.subarray(0, size);
      if (!got.equals(want)) {
        let i = 0;
        while (i < size && got[i] === want[i]) i++;
        t.fail(`${what}: through ${m.mountpoint} the vDisk differs from the reference from byte ${i}`);
      }
    }
  };
  /** The snapshot list through every mount: the names (and sticky flags) expected, the same everywhere. */
  const listed = async (what: string, want: Array<[string, boolean]>) => {
    for (const m of all) {
      const rows = await view<SnapRow[]>(m, 'user.vdisk.snapshots');
      t.deepEqual(rows.map((s) => [s.name, s.sticky]), want, `${what}: the snapshots through ${m.mountpoint}`);
      t.true(rows.every((s) => s.clones.length === 0));
    }
  };
  const taken = (m: MountHandle, name: string) => logEntries(m.log, 'snapshot taken', { path: '/disk', name }).length;

  // on ra, the vPool's owner
  await writes(20);
  await snapshot(a, 'a1');
  await writes(10);
  await everyByte('on ra');

  // delegated to rb: snapshots through each router's mount, all taken by rb
  await move('rb');
  await writes(15);
  await snapshot(b, 'b1');
  await writes(15);
  await snapshot(cc, 'b2', true);
  // the vDisk grows through rb's mount: each snapshot keeps its own size
  await ok(t, `truncate -s ${SIZE + 4 * 2 ** 20} ${q(b.p('disk'))}`);
  size = SIZE + 4 * 2 ** 20;
  await writes(15);
  await snapshot(a, 'b3');
  for (const n of ['b1', 'b2', 'b3']) {
    t.is(taken(b, n), 1, `rb took snapshot ${n}`);
    t.is(taken(a, n), 0, `ra did not take snapshot ${n}`);
  }
  await listed('delegated to rb', [['a1', false], ['b1', false], ['b2', true], ['b3', false]]);
  await everyByte('delegated to rb');
  // user.vdisk.info whole through every mount, answered by rb
  for (const m of all) {
    const info = await view<Record<string, unknown>>(m, 'user.vdisk.info');
    t.like(info, { size, template: false, parent: null, clones: [], router: 'rb' }, `user.vdisk.info through ${m.mountpoint}`);
    t.like(info.scrub as object, { running: false, progress: null }, `its scrub status through ${m.mountpoint}`);
  }
  // what needs the vPool's tree is refused, nothing changed
  for (const m of [a, cc]) {
    t.deepEqual(await xattrCalls(t, [['set', m.p('disk'), 'user.vdisk.clone', `b1:copy-${m === a ? 'a' : 'c'}`], ['set', m.p('disk'), 'user.vdisk.template', '1']]), ['EBUSY', 'EBUSY']);
  }
  t.regex(b.log, /a clone of \/disk: a clone is a new file in the vPool's tree, made by the vPool's owner; .*move it back to the vPool's owner first/);
  t.is((await ok(t, `ls ${q(a.p())}`)).trim().split('\n').sort().join(','), 'disk');
  // the API's snapshot verbs go to rb too (test/vdisk-move-api.test.ts has them all)
  const api = await sh(`node ${q(CLI)} snapshot list ${q(a.p('disk'))} --json`);
  t.is(api.code, 0, api.stdout + api.stderr);
  t.deepEqual((JSON.parse(api.stdout) as SnapRow[]).map((s) => [s.name, s.sticky]), [['a1', false], ['b1', false], ['b2', true], ['b3', false]]);

  // a rollback on rb (asked through rc) to a snapshot rb took; a delete through ra, an unstick through rb
  await rollback(cc, 'b2');
  await everyByte('rolled back to b2 on rb');
  await writes(15);
  await setx(a, 'user.vdisk.snapshot.delete', 'b1');
  snaps.delete('b1');
  await setx(b, 'user.vdisk.snapshot.unstick', 'b2');
  await snapshot(b, 'b4');
  await writes(10);
  await listed('rolled back on rb', [['a1', false], ['b2', false], ['b4', false]]);
  t.is(logEntries(b.log, 'rolled back', { path: '/disk', name: 'b2' }).length, 1, 'rb rolled back');

  // back to ra: rb's snapshots are there, and a rollback on ra to one rb took
  await move('ra');
  await listed('back on ra', [['a1', false], ['b2', false], ['b4', false]]);
  await everyByte('back on ra');
  await rollback(a, 'b4');
  await everyByte('rolled back to b4 on ra');
  await writes(15);
  // a scrub and a gc on ra: the snapshots rb took still roll back right
  await setx(a, 'user.vdisk.scrub', 'run');
  await setx(a, 'user.vdisk.gc', 'run');
  await rollback(cc, 'b2');
  await everyByte('rolled back to b2 on ra after a scrub');
  t.is(logEntries(a.log, 'rolled back', { path: '/disk', name: 'b2' }).length, 1, 'ra rolled back');
  await writes(10);

  // to rb again: a rollback there to the snapshot ra took before any move, then a snapshot, then home
  await move('rb');
  await rollback(b, 'a1');
  await everyByte('rolled back to a1 on rb');
  await writes(10);
  await snapshot(cc, 'b5');
  await listed('on rb again', [['a1', false], ['b5', false]]);
  await move('ra');
  await listed('home', [['a1', false], ['b5', false]]);
  await everyByte('home');

  const problems = (m: MountHandle) => m.log.split('\n').filter((l) => /"level":"error"/.test(l)).slice(-10).join('\n');
  if (!(t as unknown as { passed: boolean }).passed) for (const [n, m] of Object.entries(mounts)) t.log(`${n}:\n${problems(m)}`);
  t.is(await cc.stop(), 0);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});
