/**
 * Ownership per vDisk when the vPool's owner dies, through real mounts of three routers each in its own network
 * namespace (helpers/three-routers.ts: etcd and a file:// backend on the bridge, a DTL server per router, `--dtl
 * sync`; ra the vPool's owner in rack1, rb a follower in rack1, rc a follower in rack2). `/vms/disk` is delegated to
 * rb by `vpoolfs move … --to rb` (docs/cluster.md, "Ownership per vDisk") and a writer writes it through rb's mount;
 * kill -9 of ra, no restart: rb or rc takes the vPool over. If rc takes it, its start finds /vms/disk delegated to
 * the live rb and leaves it there (`stays served by router 'rb'`), and a move back to rc under the writer works; if
 * rb takes it, it closes the delegated vDisk and takes it back fenced. Either way rb's writer goes on without an
 * error, and every acknowledged write reads back through rb's and rc's mounts and on a fourth router rebuilding
 * the vPool from the backend.
 */
import { fuseTest, logEntries, startMount } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { threeRouters, waitTakeover } from './helpers/three-routers.js';
import { startWriter } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';
import { allThere, explainLogs, moveVDisk } from './helpers/vdisk-cluster.js';

const test = fuseTest();
const bridge = useBridge();
const DISK = ['vms', 'disk'];

test('kill -9 of the vPool\'s owner while its vDisk is delegated to rb, no restart: the new owner leaves it to rb (or rb takes it back fenced); rb\'s writer sees no error, every byte', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  await moveVDisk(t, r.nc.c, a.p('vms', 'disk'), 'rb');
  const wb = startWriter(b.p('vms', 'disk'), 0, 64);
  t.teardown(() => wb.stop());
  await wb.waitFor(200 + Math.floor(Math.random() * 300));

  await a.kill9();
  const { taker, other, tn } = await waitTakeover(t, r, 'kill -9');
  t.log(`${tn} took the vPool over; ${wb.acked.length} writes acknowledged by rb so far`);
  if (tn === 'rc') {
    // rc's start found /vms/disk delegated to the live rb: routed there, not opened
    await until('rc adopts /vms/disk as rb\'s', () => logEntries(c.log, /^vDisk \/vms\/disk stays served by router 'rb'/).length === 1);
    t.is(logEntries(c.log, /^TAKEBACK/).length, 0, c.log.slice(-3000));
  } else {
    await until('rb takes /vms/disk back as the new owner', () => logEntries(b.log, /^TAKEBACK: vDisk \/vms\/disk taken back from router 'rb' \(this router/).length === 1);
  }
  await wb.waitFor(wb.acked.length + 300);
  t.is(wb.stderr, '', 'rb\'s writer saw no error');
  await allThere(t, wb.acked.slice(), DISK, [b, c]);
  if (tn === 'rc') {
    // the new owner takes it back from the live delegate under the writer
    await moveVDisk(t, r.nc.c, c.p('vms', 'disk'), 'rc');
    await wb.waitFor(wb.acked.length + 300);
  }
  await wb.stop();
  t.is(wb.stderr, '', 'rb\'s writer saw no error');
  await allThere(t, wb.acked, DISK, [b, c]);

  t.is(await other.stop(), 0);
  t.is(await taker.stop(), 0);
  const d = await startMount(t, r.nc.c.router('rd'));
  await allThere(t, wb.acked, DISK, [d]);
  t.is(await d.stop(), 0);
  explainLogs(t, { ra: a, rb: b, rc: c, rd: d });
});
