/**
 * A zombie delegate, through real mounts of three routers each in its own network namespace
 * (helpers/three-routers.ts: etcd and a file:// backend on the bridge, a DTL server per router, `--dtl sync`; ra the
 * vPool's owner, rb and rc followers). `/vms/disk` is delegated to rb by `vpoolfs move … --to rb` (docs/cluster.md,
 * "Ownership per vDisk") and a writer writes it through rb's mount, rb's record showing its sync DTL.
 * SIGSTOP of rb: once rb's registry lease is gone ra takes /vms/disk back by itself (rebuild from the backend, the
 * `t<tag>` fence, the DTL recovery) with every write rb acknowledged; ra and rc write it and a reference copy is
 * taken; SIGCONT rb: rb logs FENCED, its mount answers /vms/disk with an error, and what ra serves stays the
 * reference — through ra, rc, and a fourth router rebuilding from the backend once rb's late uploads had time to land.
 * A write whose acknowledgement reaches the writer after the SIGCONT must be in what ra serves (rb made it durable
 * before the SIGSTOP; only its reply was late). Before the gate's check before an acknowledgement
 * (volume/claim/vdisk-gate.ts beforeAck) rb acknowledged the write it had received just before the SIGSTOP after
 * the SIGCONT, and that write was lost: this test failed.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { stoppedDelegate, threeRouters } from './helpers/three-routers.js';
import { badBlocks } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';
import { allThere, explainLogs } from './helpers/vdisk-cluster.js';

const test = fuseTest();
const bridge = useBridge();
const DISK = ['vms', 'disk'];

test('SIGSTOP of the delegate under its writer (sync DTL): the owner takes its vDisk back with every acknowledged write; SIGCONT: the zombie is fenced, its mount answers an error, its late uploads change nothing', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  const wb = await stoppedDelegate(t, r, 0, 300);
  // rb is stopped: every ack the writer printed by now was given before the SIGSTOP
  const ackedAtStop = wb.acked.slice();
  t.log(`SIGSTOP of rb after ${ackedAtStop.length} acknowledged writes`);
  await allThere(t, ackedAtStop, DISK, [a, c]);

  // the owner (and rc through it) writes over blocks rb wrote; the reference is what ra serves then
  await ok(t, `head -c 2M /dev/urandom | dd of=${q(a.p('vms', 'disk'))} bs=64k conv=notrunc,fsync status=none`);
  await ok(t, `head -c 2M /dev/urandom | dd of=${q(c.p('vms', 'disk'))} bs=64k seek=1024 conv=notrunc,fsync status=none`);
  const ref = path.join(r.nc.c.root, 'reference');
  await ok(t, `cp ${q(a.p('vms', 'disk'))} ${q(ref)}`);

  process.kill(b.pid, 'SIGCONT');
  await until('rb is fenced for /vms/disk', () => logEntries(b.log, /^FENCED: this router lost vDisk/).length > 0, 60_000);
  t.log(String(logEntries(b.log, /^FENCED: this router lost vDisk/)[0]!.message));
  const late = await sh(`dd if=${q(b.p('vms', 'disk'))} of=/dev/null bs=4096 count=1 iflag=direct status=none`);
  t.not(late.code, 0, 'a read of /vms/disk through the zombie rb fails');
  t.log(`rb's mount: ${late.stderr.trim()}`);
  await sleep(1000); // rb's late uploads, if any, land
  await wb.stop();
  // an acknowledgement that reaches the writer after SIGCONT is fine for a write rb made durable before the SIGSTOP
  // (its reply delayed: ra recovered it from the DTL); one rb accepted after it lost the vDisk is in nothing ra
  // serves: every acknowledged write must read back through ra, unless ra or rc overwrote its block since
  const lateAcks = wb.acked.slice(ackedAtStop.length);
  const overwritten = (i: number): boolean => { const blk = (i * 7919) % 32768; return blk < 512 || (blk >= 16384 && blk < 16896); };
  const lost = await badBlocks(t, a.p('vms', 'disk'), lateAcks.filter((i) => !overwritten(i)));
  t.log(`rb's writer: ${lateAcks.length} writes acknowledged after SIGCONT (${lateAcks.join(' ')}), ${lost.length} of them not in what ra serves; ${wb.stderr.trim() || 'no error'}`);
  t.deepEqual(lost, [], 'writes rb acknowledged after SIGCONT that are not in what ra serves');
  for (const m of [a, c]) t.is((await sh(`cmp ${q(m.p('vms', 'disk'))} ${q(ref)}`)).code, 0, `what ${m.mountpoint} serves changed after rb resumed`);

  t.is(await c.stop(), 0);
  t.is(await a.stop(), 0);
  await b.kill9();
  const d = await startMount(t, r.nc.c.router('rd'));
  t.is((await sh(`cmp ${q(d.p('vms', 'disk'))} ${q(ref)}`)).code, 0, 'a router rebuilding from the backend reads the reference');
  t.is(await d.stop(), 0);
  explainLogs(t, { ra: a, rb: b, rc: c, rd: d });
});
