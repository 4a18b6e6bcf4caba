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
 * gate found the newer epoch at its next upload; those writes were lost (13,288 in one run).
 *
 * The delegate's twin (cluster-netns-vdisk-zombie with etcd cut): /vms/disk delegated to rb, a writer on rb's
 * mount, SIGSTOP rb, ra takes the vDisk back (its recovery fences rb at the DTL servers it asks), rb's route to
 * etcd blackholed, SIGCONT rb: rb's gate cannot confirm and lets acknowledgements through; its DTL server refuses it.
 */
import { fuseTest, logEntries, sh } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { resumeUntilFenced, stoppedDelegate, threeRouters, takeoverAfter } from './helpers/three-routers.js';
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
  const { late, lost } = await resumeUntilFenced(t, a, 'ra', k.w, before, k.taker);
  const byDtl = logEntries(a.log, /^FENCED: this router lost vDisk .*a DTL server refused it/);
  const servers = Object.entries(r.nc.routers).filter(([, x]) => /vDisk \S+ fenced: router/.test(x.dtl!.output)).map(([n]) => n);
  t.log(`ra's writer: ${late.length} writes acknowledged after SIGCONT, ${lost.length} of them not in what ${tn} serves; ${k.w.stderr.trim().split('\n').pop() || 'no error'}; ` +
    `ra fenced first by ${byDtl.length > 0 ? 'a DTL server' : 'its claim or the registry'}: ${String(logEntries(a.log, /^FENCED/)[0]?.message).slice(0, 300)}; DTL servers that fenced ra: ${servers.join(', ')}`);
  t.deepEqual(lost, [], 'writes the resumed ra acknowledged that are not in what the new owner serves');
  // the new owner's recovery fenced ra at the server ra's DTL was on, and ra learnt it there
  t.is(byDtl.length, 1, `ra was not fenced through its DTL:\n${a.log.slice(-4000)}`);
  const at = Object.entries(r.nc.routers).find(([, x]) => String(byDtl[0]?.message).includes(`DTL server ${x.dtl!.address}:`))?.[0];
  t.true(at !== undefined && servers.includes(at), `the server that refused ra (${at}) logged no fence`);
  t.regex(String(byDtl[0]?.message), new RegExp(`router '${tn}'`), 'the line names the router that took the vDisk');
  explainLogs(t, { ra: a, rb: r.b, rc: r.c });
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  await a.kill9();
});

test('a delegated vDisk: SIGSTOP of the delegate, the owner takes it back, etcd cut off from the delegate only, SIGCONT: the delegate acknowledges nothing the owner lacks', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  const rb = r.nc.routers.rb!;
  const wb = await stoppedDelegate(t, r, 64, 200);
  const before = wb.acked.length; // rb is stopped: every ack printed by now was given before the SIGSTOP
  const cut = await sh(`ip -n ${rb.ns} route add blackhole ${bridge.hostIp}/32`);
  t.is(cut.code, 0, cut.stderr);
  // without the fence rb never learns it (etcd unreachable): it is seen acknowledging instead
  const { late, lost } = await resumeUntilFenced(t, b, 'rb', wb, before, a, { fenced: /^FENCED: this router lost vDisk/, orAcked: 200 });
  const byDtl = logEntries(b.log, /^FENCED: this router lost vDisk .*a DTL server refused it/);
  t.log(`rb's writer: ${late.length} writes acknowledged after SIGCONT, ${lost.length} of them not in what ra serves; ${wb.stderr.trim().split('\n').pop() || 'no error'}; ` +
    `rb fenced first by: ${String(logEntries(b.log, /^FENCED/)[0]?.message).slice(0, 300)}`);
  t.deepEqual(lost, [], 'writes the resumed delegate acknowledged that are not in what the owner serves');
  t.is(byDtl.length, 1, `rb was not fenced through its DTL:\n${b.log.slice(-4000)}`);
  t.regex(String(byDtl[0]?.message), /router 'ra'/, 'the line names the router that took the vDisk back');
  explainLogs(t, { ra: a, rb: b, rc: c });
  t.is(await c.stop(), 0);
  t.is(await a.stop(), 0);
  await b.kill9();
});
