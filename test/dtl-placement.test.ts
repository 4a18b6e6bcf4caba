/**
 * The DTL server a vDisk moves to when its server dies, chosen by failure domain, then load (registry/placement.ts,
 * tools/daemon/dtl-registry.ts). Real etcd, real DTL servers over TCP, real daemons, each router in a network
 * namespace of its own with a DTL server on its address (helpers/netns-cluster.ts, `dtl: 'routers'`):
 *
 *   ra  rack1  the owner, configured with its own host's server S_a only (the one killed below)
 *   rb  rack1  registers [S_c, S_b]      S_b: ra's failure domain, nobody's first choice
 *   rc  rack2  registers [S_c, S_d]      S_c: rack2, the first choice of rb and rc
 *   rd  rack2  registers [S_d, S_c]      S_d: rack2, the first choice of rd only
 *
 * S_a is killed under a writer on ra (sync DTL): the vDisk must go `ok_sync` on S_d — another failure domain, the
 * least used there. Registration order alone (the old rule) gives S_c, the domain without the load S_c, the load
 * without the domain S_b: each rule is needed. Every acknowledged write reads back.
 */
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { bridgeForTest } from './helpers/netns.js';
import { netCluster } from './helpers/netns-cluster.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';

const test = fuseTest();

test('the owner\'s DTL server dies: the vDisk goes on with the registered server in another failure domain that the fewest routers send to', async (t) => {
  const bridge = await bridgeForTest(t);
  const { routers, mount } = await netCluster(t, bridge, ['ra', 'rb', 'rc', 'rd'], { dtl: 'routers' });
  const S = (n: string): string => routers[n]!.dtl!.address;
  const a = await startMount(t, mount('ra', { dtlServers: [S('ra')], failureDomain: 'rack1' }));
  await ok(t, `truncate -s 64M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync' && d.server === S('ra'), 'ok_sync on S_a');
  await Promise.all([
    startMount(t, mount('rb', { dtlServers: [S('rc'), S('rb')], failureDomain: 'rack1' })),
    startMount(t, mount('rc', { dtlServers: [S('rc'), S('rd')], failureDomain: 'rack2' })),
    startMount(t, mount('rd', { dtlServers: [S('rd'), S('rc')], failureDomain: 'rack2' })),
  ]);
  const ORDER = /^DTL servers of this router, in the order they are tried/;
  const wanted = [S('ra'), S('rd'), S('rc'), S('rb')];
  await until('ra orders the registered DTL servers', () => logEntries(a.log, ORDER).some((e) => JSON.stringify(e.servers) === JSON.stringify(wanted)), 30_000)
    .catch((err: Error) => {
      throw new Error(`${err.message}: wanted ${wanted.join(', ')}; ra logged:\n${logEntries(a.log, ORDER).map((e) => String(e.message)).join('\n')}`);
    });
  t.log(String(logEntries(a.log, ORDER).at(-1)!.message));

  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(100 + Math.floor(Math.random() * 200));
  await routers.ra!.dtl!.kill9();
  const n = w.acked.length;
  const d = await waitDtl(a.p('disk'), (x) => x.state === 'ok_sync' && x.server !== S('ra'), 'ok_sync on another server');
  const name = Object.keys(routers).find((r) => S(r) === d.server);
  t.is(d.server, S('rd'), `the vDisk went on with S_${name?.slice(1)} (${d.server}), not S_d (${S('rd')})`);
  await w.waitFor(n + 200);
  await w.stop();
  t.is(w.stderr, '', 'the writer saw no error');
  const bad = await badBlocks(t, a.p('disk'), w.acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing`);
});
