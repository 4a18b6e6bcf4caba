/**
 * Followers across a real network (issue 15's "real network"): routers A and B each in their own network
 * namespace made by the test (`ip netns`, a veth pair each, plugged into a bridge that only this test uses;
 * addresses only there), etcd and a DTL server on the bridge's address, one file:// backend. The router link
 * runs off loopback, so with a shared secret (`--peer-secret-file`). Set-up: helpers/netns.ts, helpers/netns-cluster.ts.
 * - B follows A over the bridge: a tree change on A is seen on B, a write and a snapshot on B are seen on A,
 *   fio --verify from B;
 * - A's network is cut (its veth down: A keeps running, cut off from etcd and from B) while B writes with a
 *   sync DTL: A's registry lease expires, B takes the vPool over in place (the backend claim taken from A, which
 *   is fenced), B's writer sees no error and every write it had acknowledged reads back on B.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { bridgeForTest } from './helpers/netns.js';
import { netCluster } from './helpers/netns-cluster.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { fioVerifyCommand } from './helpers/fio-verify.js';

const test = fuseTest();

test('routers in their own network namespaces: B follows A over a bridge; A cut off while B writes (sync DTL): B takes over in place with every acknowledged write', async (t) => {
  const bridge = await bridgeForTest(t);
  const { c, routers, hostDtl, mount } = await netCluster(t, bridge, ['ra', 'rb'], { dtl: 'host' });
  const servers = [hostDtl!.address];
  const a = await startMount(t, mount('ra', { dtlServers: servers }));
  const b = await startMount(t, mount('rb', { dtlServers: servers }));
  t.is(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, b.log);
  const rows = await c.routers();
  t.regex(rows.find((x) => x.name === 'ra')?.address ?? '', new RegExp(`^${routers.ra.ip.replace(/\./g, '\\.')}:\\d+$`));

  // one namespace over the bridge
  await ok(t, `mkdir ${q(a.p('vms'))} && truncate -s 128M ${q(a.p('vms', 'disk'))}`);
  await waitDtl(a.p('vms', 'disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  t.is((await ok(t, `stat -c %s ${q(b.p('vms', 'disk'))}`)).trim(), String(128 * 2 ** 20));
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(b.p('vms', 'disk'))} bs=64k seek=100 conv=notrunc,fsync status=none && setfattr -n user.vdisk.snapshot -v before-cut ${q(b.p('vms', 'disk'))}`);
  const [sa, sb] = await Promise.all([a, b].map((m) => ok(t, `sha256sum < ${q(m.p('vms', 'disk'))}`)));
  t.is(sa, sb);
  t.regex(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(a.p('vms', 'disk'))}`), /"name":"before-cut"/);
  await ok(t, fioVerifyCommand(b.p('vms'), { name: 'fio', rw: 'randwrite', bs: '4k', direct: 1, size: '8M' }, false), 240_000);

  // cut A off (its veth down), B writing through the link meanwhile
  const w = startWriter(b.p('vms', 'disk'), 0, 64);
  await w.waitFor(200 + Math.floor(Math.random() * 300));
  const cutAt = Date.now();
  await routers.ra.cut();
  const n = w.acked.length;
  while (logEntries(b.log, /^took vPool 'pool' over from router 'ra'/).length === 0) {
    if (!b.alive) t.fail(`rb exited:\n${b.log}`);
    await sleep(100);
  }
  t.log(`rb serves the vPool ${Date.parse(String(logEntries(b.log, /^took vPool 'pool' over/)[0].timestamp)) - cutAt} ms after ra's network was cut; ${n} writes acknowledged before`);
  t.is(logEntries(b.log, /^FORCED TAKEOVER: taking the vPool from a live claim of router 'ra'/).length, 1, b.log);
  await w.waitFor(n + 200);
  await w.stop();
  t.is(w.stderr, '', 'the writer on B saw no error');
  const bad = await badBlocks(t, b.p('vms', 'disk'), w.acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing on B`);
  t.regex(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(b.p('vms', 'disk'))}`), /"name":"before-cut"/);
  t.is(await b.stop(), 0);
  await a.kill9();
});
