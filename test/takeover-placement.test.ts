/**
 * Takeover placement by load (issue 15: "prefer another failure domain, then the least loaded";
 * registry/placement.ts, the deferral in tools/daemon/follower.ts). Real etcd, real daemons, routers in network
 * namespaces of their own (helpers/netns.ts) so that each machine has its own address:
 *
 * - machine A runs `ra`, the owner of vPool `pool`; machine B runs `rb`, a follower of `pool`, and `rb-other`,
 *   the owner of vPool `other` (its own backend, a few vDisks); machine C runs `rc`, a follower of `pool`. All in
 *   one failure domain, so the domain prefers no one.
 * - `kill -9` of ra: rc, on the machine that owns nothing, must take `pool` over and rb follow it; rb, whose
 *   machine runs `other`, defers to rc (its log names rc and the loads) if it noticed the death first. Without
 *   the load rule the tie goes by name, to rb (rc would defer to it): the test fails.
 * Every write acknowledged on ra (sync DTL, in ok_sync) reads back through rc and rb.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { bridgeForTest } from './helpers/netns.js';
import { netCluster } from './helpers/netns-cluster.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';

const test = fuseTest();

test('kill -9 of the owner, two followers in one failure domain: the one whose machine owns nothing takes the vPool over, the other (its machine owns another vPool) defers to it', async (t) => {
  const bridge = await bridgeForTest(t);
  const { c, routers, hostDtl, mount } = await netCluster(t, bridge, ['ra', 'rb', 'rc'], { dtl: 'host' });
  const servers = [hostDtl!.address];
  const fd = 'rack1';
  const a = await startMount(t, mount('ra', { dtlServers: servers, failureDomain: fd }));
  await ok(t, `truncate -s 64M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  const [b, cc] = await Promise.all(['rb', 'rc'].map((n) => startMount(t, mount(n, { dtlServers: servers, failureDomain: fd }))));
  // rb's machine also owns vPool 'other' (another backend), with three vDisks recorded
  const other = c.router('rb-other', ['--vpool', 'other', '--failure-domain', fd]);
  const o = await startMount(t, { ...other, backend: `file://${path.join(c.root, 'backend-other')}`, prefix: routers.rb!.prefix });
  await ok(t, `truncate -s 8M ${q(o.p('x'))} ${q(o.p('y'))} ${q(o.p('z'))}`);
  await until('the three vDisks of vPool other recorded for rb-other', async () => (await c.routers()).find((r) => r.name === 'rb-other')?.vdisks.length === 3);
  const rows = await c.routers();
  t.like(rows.find((r) => r.name === 'rb-other'), { role: 'owner', vpool: 'other' });
  for (const n of ['rb', 'rc']) t.like(rows.find((r) => r.name === n), { role: 'follower', vpool: 'pool' });

  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(200 + Math.floor(Math.random() * 200));
  const killedAt = Date.now();
  await a.kill9();
  const acked = w.acked.slice();
  await w.stop().catch(() => undefined);

  const TOOK = /^took vPool 'pool' over from router 'ra'/;
  const deadline = Date.now() + 60_000;
  let taker: typeof b | undefined;
  while ((taker = [b, cc].find((m) => logEntries(m.log, TOOK).length > 0)) === undefined) {
    for (const m of [b, cc]) if (!m.alive) t.fail(`${m.mountpoint}'s router exited:\n${m.log}`);
    if (Date.now() > deadline) t.fail(`neither rb nor rc took the vPool over within 60 s:\n${b.log.slice(-3000)}\n${cc.log.slice(-3000)}`);
    await sleep(100);
  }
  const deferred = logEntries(b.log, /^deferring the takeover for up to \d+ ms to router 'rc': the least loaded/);
  t.log(`${taker === cc ? 'rc' : 'rb'} serves vPool pool ${Date.parse(String(logEntries(taker.log, TOOK)[0]!.timestamp)) - killedAt} ms after the kill -9 of ra; rb ${deferred.length > 0 ? `deferred to rc (${JSON.stringify(deferred[0]!.loads)})` : 'did not notice the death before rc took it'}`);
  t.is(taker, cc, `rc (its machine owns nothing) should take the vPool over, not rb (its machine owns vPool other):\n${b.log.slice(-3000)}`);
  t.is(logEntries(b.log, /^TAKEOVER/).length, 0, b.log.slice(-3000));
  for (const d of deferred) t.deepEqual(d.loads, { rb: { vdisks: 3, vpools: 1 }, rc: { vdisks: 0, vpools: 0 } });
  await until('rb follows rc', () => logEntries(b.log, /^following router 'rc'/).length > 0);
  for (const m of [cc, b]) {
    const bad = await badBlocks(t, m.p('disk'), acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} writes acknowledged on ra missing through ${m.mountpoint}`);
  }
  // the other vPool is untouched: still rb-other's
  t.like((await c.routers()).find((r) => r.name === 'rb-other'), { role: 'owner', vpool: 'other' });
});
