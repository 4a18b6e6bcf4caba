/**
 * The faults of issue 15's three-router proof other than kill -9, as scenarios run on each backend by
 * test/cluster-netns-s3-faults.test.ts (radosgw) and test/cluster-netns-file-faults.test.ts (file://). The
 * set-up (A owner, B and C followers, each in its own network namespace, a DTL server in each, A and B in one
 * failure domain) and the takeover checks are helpers/three-routers.ts's.
 * - `networkCut`: A's veth down under a writer on A's mount (A keeps running, cut off from etcd, B, C and — on
 *   radosgw — the backend; a file:// backend is a local directory A still reaches: the backend claim fences it):
 *   B or C takes over in place, the other follows; every write A acknowledged before the cut (its DTL in `sync`,
 *   `ok_sync`) reads back through both;
 * - `stopAndResume`: SIGSTOP of A under a writer on A's mount: the same; then the new owner writes, SIGCONT A:
 *   A logs OWNERSHIP LOST and FENCED, a write through A's own mount fails, and what the new owner serves is
 *   unchanged — on it, through the other follower, and on a fourth router rebuilding the released vPool from
 *   the backend afterwards.
 * Each prints the time from the fault to the new owner serving (not asserted).
 */
import type { ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ok, q, sh, startMount } from './mount.js';
import type { Bridge } from './netns.js';
import { threeRouters, takeoverAfter } from './three-routers.js';
import { fencedAndLost } from './fenced-wait.js';

/**
 * Where the routers find the backend: `inNs` the URL the routers in their namespaces use, `onHost` the one a
 * router on the host's network uses (the fourth router of `stopAndResume`). Both undefined: a file:// backend
 * under the cluster's directory (one path, seen the same from every namespace).
 */
export interface FaultBackend {
  inNs?: string;
  onHost?: string;
}

export async function networkCut(t: ExecutionContext, bridge: Bridge, backend: FaultBackend): Promise<void> {
  const r = await threeRouters(t, bridge, backend.inNs);
  const k = await takeoverAfter(t, r, 'the network cut', () => r.nc.routers.ra!.cut());
  await k.w.stop();
  t.log(`ra acknowledged ${k.w.acked.length - k.checked.length} more writes after the cut (DTL unreachable: unprotected, not checked)`);
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  await r.a.kill9();
}

export async function stopAndResume(t: ExecutionContext, bridge: Bridge, backend: FaultBackend): Promise<void> {
  const r = await threeRouters(t, bridge, backend.inNs);
  const { a } = r;
  t.teardown(() => { if (a.alive) process.kill(a.pid, 'SIGCONT'); });
  const k = await takeoverAfter(t, r, 'SIGSTOP', async () => { process.kill(a.pid, 'SIGSTOP'); });
  // the new owner writes (through itself and through the other follower) before A resumes
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(k.taker.p('vms', 'disk'))} bs=64k seek=1500 conv=notrunc,fsync status=none`);
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(k.other.p('vms', 'disk'))} bs=64k seek=1600 conv=notrunc,fsync status=none`);
  const before = await ok(t, `sha256sum < ${q(k.taker.p('vms', 'disk'))}`);

  process.kill(a.pid, 'SIGCONT');
  if (!await fencedAndLost(t, a, 'r[bc]')) return;
  await k.w.stop();
  const late = await sh(`head -c 64K /dev/urandom | dd of=${q(a.p('vms', 'disk'))} bs=64k conv=notrunc,fsync status=none`);
  t.not(late.code, 0, 'a write through the fenced router fails');
  // give A's late uploads (if any) time to land, then: unchanged on the new owner and through the other follower
  await sleep(1000);
  for (const m of [k.taker, k.other]) t.is(await ok(t, `sha256sum < ${q(m.p('vms', 'disk'))}`), before, m.mountpoint);
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  // and in the backend: a fourth router (on the host's network) rebuilding the released vPool from it reads the same
  const rd = r.nc.c.router('rd');
  const d = await startMount(t, { ...rd, backend: backend.onHost ?? rd.backend });
  t.is(await ok(t, `sha256sum < ${q(d.p('vms', 'disk'))}`), before, 'rebuilt from the backend');
  t.is(await d.stop(), 0);
  await a.kill9();
}
