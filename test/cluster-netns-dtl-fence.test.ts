/**
 * Fencing at the DTL server through real mounts (dtl-client/fence.ts; the twin of cluster-netns-owner-late-ack,
 * where etcd still answers the resumed owner): three routers each in its own network namespace
 * (helpers/three-routers.ts: a DTL server in each, ra's sync DTL on rb's), a writer on the owner ra's mount,
 * SIGSTOP ra, rb or rc takes the vPool over (its recovery fences ra at the DTL servers it asks), then ra's route
 * to etcd is blackholed — etcd no longer answers ra, its DTL server and its writer still do — and SIGCONT ra. ra's
 * check before acknowledging cannot reach etcd and lets the writes through (etcd down must not stop I/O), so only
 * the DTL server stands between ra and acknowledging writes the new owner never sees: every write the resumed ra
 * acknowledges must be in what the new owner serves.
 *
 * Found failing before the fence (2026-12-05): ra acknowledged writes after SIGCONT until its backend claim's
 * gate found the newer epoch at its next upload; those writes were lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, sh } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { threeRouters, takeoverAfter } from './helpers/three-routers.js';
import { badBlocks } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';
import { explainLogs } from './helpers/vdisk-cluster.js';

const test = fuseTest();
const bridge = useBridge();

test('SIGSTOP of the owner, a takeover, etcd cut off from the owner only, SIGCONT: the DTL server refuses the resumed owner, which acknowledges nothing the new owner lacks', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a } = r;
  const ra = r.nc.routers.ra!;
  t.teardown(() => { if (a.alive) process.kill(a.pid, 'SIGCONT'); });
  const k = await takeoverAfter(t, r, 'SIGSTOP', async () => { process.kill(a.pid, 'SIGSTOP'); });
  const tn = k.taker === r.b ? 'rb' : 'rc';
  const before = k.w.acked.length; // ra is stopped: every ack printed by now was given before the SIGSTOP
  // ra's packets to etcd (on the bridge's host address) go nowhere; the routers' DTL servers are on other addresses
  const cut = await sh(`ip -n ${ra.ns} route add blackhole ${bridge.hostIp}/32`);
  t.is(cut.code, 0, cut.stderr);
  process.kill(a.pid, 'SIGCONT');
  await until('ra is fenced', () => logEntries(a.log, /^FENCED/).length > 0, 60_000);
  await sleep(1000);
  await k.w.stop();
  const late = k.w.acked.slice(before);
  const lost = await badBlocks(t, k.taker.p('vms', 'disk'), late);
  const byDtl = logEntries(a.log, /^FENCED: this router lost vDisk .*a DTL server refused it/);
  const servers = Object.entries(r.nc.routers).filter(([, x]) => /vDisk \S+ fenced: router/.test(x.dtl!.output)).map(([n]) => n);
  t.log(`ra's writer: ${late.length} writes acknowledged after SIGCONT, ${lost.length} of them not in what ${tn} serves; ${k.w.stderr.trim().split('\n').pop() || 'no error'}; ` +
    `ra fenced first by ${byDtl.length > 0 ? 'a DTL server' : 'its claim or the registry'}: ${String(logEntries(a.log, /^FENCED/)[0]?.message).slice(0, 300)}; DTL servers that fenced ra: ${servers.join(', ')}`);
  t.deepEqual(lost, [], 'writes the resumed ra acknowledged that are not in what the new owner serves');
  // the new owner's recovery fenced ra at the server ra's DTL was on (rb's: ra's first), and ra learnt it there
  t.true(servers.includes('rb'), `rb's DTL server was not fenced:\n${r.nc.routers.rb!.dtl!.output.slice(-3000)}`);
  t.is(byDtl.length, 1, `ra was not fenced through its DTL:\n${a.log.slice(-4000)}`);
  t.regex(String(byDtl[0]?.message), new RegExp(`router '${tn}'`), 'the line names the router that took the vDisk');
  explainLogs(t, { ra: a, rb: r.b, rc: r.c });
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  await a.kill9();
});
