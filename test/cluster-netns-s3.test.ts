/**
 * Issue 15's proof with three routers on Ceph radosgw, and the same on file:// (helpers/three-routers.ts): A, B and C each in a network
 * namespace of its own on a bridge this file makes before radosgw starts, so that radosgw listens on the
 * bridge's address too (helpers/s3-server.ts `alsoOn`); etcd on the bridge, a DTL server in each router's
 * namespace, A and B in failure domain rack1, C in rack2.
 * - one namespace: mkdir, create, rename and a snapshot (setfattr) on A are seen on B and C; a write on C
 *   reads back on A and B; concurrent exclusive creates of one name on B and C: one wins, the other EEXIST;
 * - kill -9 of A under a writer on A's mount (sync DTL): B or C takes over in place (C preferably: the code
 *   guarantees only that B defers first), the other follows; every write A acknowledged reads back through
 *   both; the time is printed.
 * The network cut and SIGSTOP of A are in cluster-netns-s3-faults.test.ts (radosgw) and cluster-netns-file-faults.test.ts (file://).
 */
import { sh, fuseTest, ok, q } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { useS3Server } from './helpers/s3-server.js';
import { threeRouters, takeoverAfter } from './helpers/three-routers.js';
import { badBlocks } from './helpers/dtl-mount.js';

const test = fuseTest();
const bridge = useBridge();
const s3 = useS3Server('cluster3', { alsoOn: () => bridge.hostIp });

for (const backend of ['radosgw', 'file://']) {
  test(`three routers in network namespaces on ${backend}: one namespace, concurrent creates, kill -9 of the owner: a follower takes over with every acknowledged write`, async (t) => {
    const r = await threeRouters(t, bridge, backend === 'radosgw' ? s3.urlOn(bridge.hostIp, 'cluster3', 'ns') : undefined);
    const { a, b, c } = r;

    // namespace changes on A, seen on B and C (a new name at once; the kernel's 1 s cache is the bound otherwise)
    await ok(t, `mkdir ${q(a.p('vms', 'dir'))} && touch ${q(a.p('vms', 'dir', 'f1'))} && truncate -s 4M ${q(a.p('vms', 'dir', 'f2'))}`);
    await ok(t, `mv ${q(a.p('vms', 'dir', 'f1'))} ${q(a.p('vms', 'dir', 'renamed'))} && setfattr -n user.vdisk.snapshot -v s1 ${q(a.p('vms', 'disk'))}`);
    for (const m of [b, c]) {
      t.is((await ok(t, `ls ${q(m.p('vms', 'dir'))}`)).split('\n').filter(Boolean).sort().join(' '), 'f2 renamed', m.mountpoint);
      t.is((await ok(t, `stat -c %s ${q(m.p('vms', 'dir', 'f2'))}`)).trim(), String(4 * 2 ** 20));
      t.regex(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(m.p('vms', 'disk'))}`), /"name":"s1"/);
    }
    await ok(t, `head -c 256K /dev/urandom > ${q(`${r.nc.c.root}/data`)} && dd if=${q(`${r.nc.c.root}/data`)} of=${q(c.p('vms', 'dir', 'f2'))} bs=64k conv=notrunc,fsync status=none`);
    const want = await ok(t, `sha256sum < ${q(c.p('vms', 'dir', 'f2'))}`);
    for (const m of [a, b]) t.is(await ok(t, `sha256sum < ${q(m.p('vms', 'dir', 'f2'))}`), want, m.mountpoint);

    // concurrent exclusive creates of one name through B and C (each several times, a fresh name each round)
    for (let i = 0; i < 5; i++) {
      const name = `race-${i}`;
      const create = (m: typeof b) => sh(`python3 -c "import os,sys; os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))" ${q(m.p('vms', name))}`);
      const res = await Promise.all([create(b), create(c)]);
      t.deepEqual(res.map((x) => x.code).sort(), [0, 1], JSON.stringify(res));
      t.regex(res.find((x) => x.code !== 0)!.stderr, /FileExistsError|File exists/);
    }
    t.is((await ok(t, `ls ${q(a.p('vms'))} | grep -c ^race-`)).trim(), '5');

    // kill -9 of A under a writer on A
    const k = await takeoverAfter(t, r, 'kill -9', () => a.kill9());
    await k.w.stop();
    // every write A acknowledged before it died (the writer's last lines included)
    for (const m of [k.taker, k.other]) t.deepEqual(await badBlocks(t, m.p('vms', 'disk'), k.w.acked), [], m.mountpoint);
    // the tree survived the takeover, and a change through the other follower lands on the new owner
    await ok(t, `mkdir ${q(k.other.p('vms', 'after'))}`);
    t.is((await ok(t, `ls ${q(k.taker.p('vms'))} | grep -c -e ^after$ -e ^dir$`)).trim(), '2');
    t.regex(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(k.taker.p('vms', 'disk'))}`), /"name":"s1"/);
    const rows = await r.nc.c.routers();
    t.deepEqual(rows.map((x) => [x.name, x.state]), [['ra', 'expired'], ['rb', 'alive'], ['rc', 'alive']]);
    t.is(await k.other.stop(), 0);
    t.is(await k.taker.stop(), 0);
  });
}
