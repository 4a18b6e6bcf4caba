/**
 * Issue 15's takeover proof with three routers on Ceph radosgw, the faults other than kill -9
 * (helpers/three-routers.ts; the set-up and kill -9 are described in cluster-netns-s3.test.ts):
 * - A's network cut (its veth down: A keeps running, cut off from etcd, the backend, B and C) under a writer on
 *   A's mount: B or C takes over in place, the other follows; every write A acknowledged before the cut (its
 *   DTL in `sync`, `ok_sync`) reads back through both;
 * - SIGSTOP of A under a writer on A's mount: the same; then the new owner writes, SIGCONT A: A logs OWNERSHIP
 *   LOST and FENCED, a write through A's own mount fails, and what the new owner serves is unchanged — on it,
 *   through the other follower, and on a fourth router rebuilding the vPool from radosgw afterwards.
 * Each prints the time from the fault to the new owner serving (not asserted).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { useS3Server } from './helpers/s3-server.js';
import { threeRouters, takeoverAfter } from './helpers/three-routers.js';

const test = fuseTest();
const bridge = useBridge();
const s3 = useS3Server('cluster3f', { alsoOn: () => bridge.hostIp });

test('three routers on radosgw: the owner\'s network cut under its writer (sync DTL): a follower takes over with every write acknowledged before the cut', async (t) => {
  const r = await threeRouters(t, bridge, s3.urlOn(bridge.hostIp, 'cluster3', 'cut'));
  const k = await takeoverAfter(t, r, 'the network cut', () => r.nc.routers.ra!.cut());
  await k.w.stop();
  t.log(`ra acknowledged ${k.w.acked.length - k.checked.length} more writes after the cut (DTL unreachable: unprotected, not checked)`);
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  await r.a.kill9();
});

test('three routers on radosgw: SIGSTOP of the owner under its writer (sync DTL): a follower takes over; the owner resumed is fenced and changes nothing', async (t) => {
  const r = await threeRouters(t, bridge, s3.urlOn(bridge.hostIp, 'cluster3', 'stop'));
  const { a } = r;
  t.teardown(() => { if (a.alive) process.kill(a.pid, 'SIGCONT'); });
  const k = await takeoverAfter(t, r, 'SIGSTOP', async () => { process.kill(a.pid, 'SIGSTOP'); });
  // the new owner writes (through itself and through the other follower) before A resumes
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(k.taker.p('vms', 'disk'))} bs=64k seek=1500 conv=notrunc,fsync status=none`);
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(k.other.p('vms', 'disk'))} bs=64k seek=1600 conv=notrunc,fsync status=none`);
  const before = await ok(t, `sha256sum < ${q(k.taker.p('vms', 'disk'))}`);

  process.kill(a.pid, 'SIGCONT');
  const deadline = Date.now() + 60_000;
  while (logEntries(a.log, /^FENCED/).length === 0) {
    if (Date.now() > deadline) t.fail(`ra was not fenced within 60 s of SIGCONT:\n${a.log.slice(-4000)}`);
    await sleep(100);
  }
  t.true(logEntries(a.log, /^OWNERSHIP LOST: vPool 'pool' is now owned by router 'r[bc]'/).length > 0, a.log.slice(-4000));
  await k.w.stop();
  const late = await sh(`head -c 64K /dev/urandom | dd of=${q(a.p('vms', 'disk'))} bs=64k conv=notrunc,fsync status=none`);
  t.not(late.code, 0, 'a write through the fenced router fails');
  // give A's late uploads (if any) time to land, then: unchanged on the new owner and through the other follower
  await sleep(1000);
  for (const m of [k.taker, k.other]) t.is(await ok(t, `sha256sum < ${q(m.p('vms', 'disk'))}`), before, m.mountpoint);
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  // and in radosgw: a fourth router (on the host's network) rebuilding the released vPool from it reads the same
  const d = await startMount(t, { ...r.nc.c.router('rd'), backend: s3.url('cluster3', 'stop') });
  t.is(await ok(t, `sha256sum < ${q(d.p('vms', 'disk'))}`), before, 'rebuilt from radosgw');
  t.is(await d.stop(), 0);
  await a.kill9();
});
