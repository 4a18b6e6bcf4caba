/**
 * Followers across a real network (issue 15's "real network"): routers A and B each in their own network
 * namespace made by the test (`ip netns`, a veth pair each, plugged into a bridge that only this test uses;
 * addresses only there), etcd and a DTL server on the bridge's address, one file:// backend. The router link
 * runs off loopback, so with a shared secret (`--peer-secret-file`).
 * - B follows A over the bridge: a tree change on A is seen on B, a write and a snapshot on B are seen on A,
 *   fio --verify from B;
 * - A's network is cut (its veth down: A keeps running, cut off from etcd and from B) while B writes with a
 *   sync DTL: A's registry lease expires, B takes the vPool over in place (the backend claim taken from A, which
 *   is fenced), B's writer sees no error and every write it had acknowledged reads back on B.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { DtlServerProcess } from './helpers/dtl-server.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { fioVerifyCommand } from './helpers/fio-verify.js';

const test = fuseTest();

test('routers in their own network namespaces: B follows A over a bridge; A cut off while B writes (sync DTL): B takes over in place with every acknowledged write', async (t) => {
  const id = randomBytes(2).toString('hex');
  const net = 1 + Math.floor(Math.random() * 250);
  const br = `vpbr${id}`;
  const ns = (r: string) => `vpf-${id}-${r}`;
  const ip = (n: number) => `10.201.${net}.${n}`;
  t.teardown(async () => {
    // the veths go explicitly: a namespace whose cut-off sockets still retransmit outlives its `ip netns del`
    await sh(`ip link del vph${id}a 2>/dev/null; ip link del vph${id}b 2>/dev/null; ip netns del ${ns('a')} 2>/dev/null; ip netns del ${ns('b')} 2>/dev/null; ip link del ${br} 2>/dev/null; true`);
  });
  const setup = [
    `ip link add ${br} type bridge`, `ip addr add ${ip(1)}/24 dev ${br}`, `ip link set ${br} up`,
    ...['a', 'b'].flatMap((r, i) => [
      `ip netns add ${ns(r)}`, `ip link add vph${id}${r} type veth peer name vpn${id}${r}`, `ip link set vpn${id}${r} netns ${ns(r)}`,
      `ip link set vph${id}${r} master ${br}`, `ip link set vph${id}${r} up`,
      `ip -n ${ns(r)} addr add ${ip(2 + i)}/24 dev vpn${id}${r}`, `ip -n ${ns(r)} link set vpn${id}${r} up`, `ip -n ${ns(r)} link set lo up`,
    ]),
  ];
  await ok(t, setup.join(' && '));

  const c = await cluster(t, undefined, ip(1));
  const secret = path.join(c.root, 'secret');
  writeFileSync(secret, randomBytes(24).toString('hex'));
  const srv = new DtlServerProcess(path.join(c.root, 'dtl'), `${ip(1)}:0`, ['--secret-file', secret]);
  t.teardown(() => srv.kill9());
  await srv.start();
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address, '--dtl-secret-file', secret, '--peer-secret-file', secret];
  const inNs = (r: string) => ['nsenter', `--net=/run/netns/${ns(r)}`];
  const a = await startMount(t, { ...c.router('ra', [...dtl, '--peer-listen', `${ip(2)}:0`], { dtlRetryMs: 300 }), prefix: inNs('a') });
  const b = await startMount(t, { ...c.router('rb', [...dtl, '--peer-listen', `${ip(3)}:0`], { dtlRetryMs: 300 }), prefix: inNs('b') });
  t.is(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, b.log);
  const rows = await c.routers();
  t.regex(rows.find((x) => x.name === 'ra')?.address ?? '', new RegExp(`^${ip(2).replace(/\./g, '\\.')}:\\d+$`));

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
  await ok(t, `ip -n ${ns('a')} link set vpn${id}a down`);
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
