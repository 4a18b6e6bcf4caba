/**
 * Routers registered in a real etcd (issue 15, docs/cluster.md), with real `vpoolfs mount --registry` daemons
 * on one file:// backend, each with its own state directory and mountpoint:
 * - registration and `router list` (alive, failure domain, the vDisks it owns); a second router cannot open
 *   the vDisks the first owns: its mount is refused (BUSY) naming the owner, and logged; a clean stop leaves
 *   the registry and releases ownership, and the other router then takes the vPool without a takeover;
 * - kill -9 of the owner (writing with a sync DTL): the other router is refused until the owner's registry
 *   lease has expired, then takes the vPool over (a new owner tag, the backend claim taken at once) and every
 *   acknowledged write is there; `router list` shows the dead router as expired, owning nothing.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMounted, logEntries, ok, q, startMount } from './helpers/mount.js';
import { fuseTest } from './helpers/mount.js';
import { cluster, mountOnceFree, refusedMount } from './helpers/registry.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';

const test = fuseTest();

const sha = async (t: Parameters<typeof ok>[0], file: string): Promise<string> => (await ok(t, `sha256sum ${q(file)}`)).split(' ')[0];

test('registration and router list; a second router is refused the vDisks the first owns, naming it; a clean stop releases them', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(a.p('disk'))} bs=64k conv=fsync status=none && mkdir ${q(a.p('dir'))} && truncate -s 4M ${q(a.p('dir', 'other'))}`);
  const want = await sha(t, a.p('disk'));

  // the router and both its vDisks (recorded every third of the lease)
  let rows = await c.routers();
  while (rows[0]?.vdisks.length !== 2) {
    await sleep(100);
    rows = await c.routers();
  }
  t.is(rows.length, 1);
  t.like(rows[0], { name: 'ra', state: 'alive', pid: a.pid, failureDomain: 'fd-ra' });
  t.deepEqual(rows[0].vpools.map((v) => v.vpool), ['pool']);
  const tag = rows[0].vpools[0].tag;
  t.deepEqual(rows[0].vdisks.map((d) => [d.vpool, d.path, d.tag]).sort(), [['pool', '/dir/other', tag], ['pool', '/disk', tag]]);
  const table = await c.routerTable();
  t.regex(table, /^ra\s+alive\s+owner\s+pool\s+\S+\s+\d+\s+fd-ra\s/m);
  // and whether its unshipped writes are protected (the takeover rule: docs/cluster.md)
  t.regex(table, /ra: pool:\/disk \(vDisk [0-9a-f-]+, owner tag \d+, DTL none ok_standalone, (clean|unshipped writes) since \S+( — NOT SAFE to take over)?\)/);

  // a second router told not to follow (--no-follow): refused before anything is mounted, the owner named, on stderr and in its log
  const r = await refusedMount(c.router('rb', ['--no-follow']));
  t.is(r.code, 1, r.log);
  t.regex(r.log, /vPool 'pool' is owned by router 'ra' \(owner tag \d+, since \S+\), which is alive: registered from host \S+, pid \d+, lease 2 s, failure domain fd-ra.*\(BUSY\)/);
  t.true(logEntries(r.log, /^refused: vPool 'pool' is owned by router 'ra'/).length > 0, r.log);
  t.false(await isMounted(path.join(c.root, 'rb-mnt')));
  rows = await c.routers();
  t.deepEqual(rows.map((x) => x.name), ['ra'], 'the refused router left the registry');
  t.is(await sha(t, a.p('disk')), want, 'the owner serves on');

  // a clean stop: ownership released, registration gone; B then takes the vPool as a new owner, no takeover
  t.is(await a.stop(), 0);
  t.true(logEntries(a.log, "released ownership of vPool 'pool'").length > 0, a.log);
  t.deepEqual(await c.routers(), []);
  const b = await startMount(t, c.router('rb'));
  t.is(logEntries(b.log, /^taking over vPool/).length, 0, b.log);
  t.is(logEntries(b.log, /^FORCED TAKEOVER/).length, 0, b.log);
  const took = logEntries(b.log, /^took ownership of vPool 'pool' \(owner tag (\d+)\)$/);
  t.is(took.length, 1, b.log);
  t.true((took[0].tag as number) > tag, 'a new owner tag');
  t.is(await sha(t, b.p('disk')), want);
  t.is(await b.stop(), 0);
});

test('kill -9 of the owner: the other router is refused until its lease expired, then takes the vDisk over with every acknowledged write (sync DTL)', async (t) => {
  const c = await cluster(t);
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  const a = await startMount(t, c.router('ra', dtl, { dtlRetryMs: 300 }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(300 + Math.floor(Math.random() * 700));
  await a.kill9();
  await w.done;
  const acked = [...w.acked];

  const { m: b, refusals } = await mountOnceFree(t, c.router('rb', [...dtl, '--no-follow'], { dtlRetryMs: 300 }), /vPool 'pool' is owned by router 'ra'/);
  t.log(`rb was refused ${refusals} times before ra's registry lease expired; ${acked.length} writes acknowledged on ra`);
  t.is(logEntries(b.log, /^taking over vPool 'pool' from router 'ra' \(owner tag \d+ → \d+\), whose registry lease has expired$/).length, 1, b.log);
  t.is(logEntries(b.log, /^FORCED TAKEOVER: taking the vPool from a live claim of router 'ra'/).length, 1, 'the backend claim (60 s lease) is taken at once');
  const bad = await badBlocks(t, b.p('disk'), acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing after the takeover`);

  let rows = await c.routers();
  while (rows.find((x) => x.name === 'rb')?.vdisks.length !== 1) {
    await sleep(100);
    rows = await c.routers();
  }
  t.like(rows.find((x) => x.name === 'ra'), { state: 'expired', vdisks: [], vpools: [] });
  t.like(rows.find((x) => x.name === 'rb'), { state: 'alive' });
  t.is(await b.stop(), 0);
});

test('a router without the registry holds the backend: a router with it is refused by the backend claim and leaves no ownership behind', async (t) => {
  const c = await cluster(t);
  const plain = c.router('plain');
  const a = await startMount(t, { ...plain, extraArgs: plain.extraArgs!.filter((x, i, all) => x !== '--registry' && all[i - 1] !== '--registry') });
  await ok(t, `head -c 64K /dev/urandom > ${q(a.p('disk'))}`);
  const r = await refusedMount(c.router('rb'));
  t.is(r.code, 1, r.log);
  t.regex(r.log, /the vPool's backend is in use by router 'plain'/);
  t.deepEqual(await c.routers(), [], 'no registration, no owner left in etcd');
  t.is(await a.stop(), 0);
});

test('kill -9 and an immediate restart of the same router (same state directory): it replaces its own registration and keeps its owner tag', async (t) => {
  const c = await cluster(t);
  // a long registry lease (60 s), so that the dead daemon's registration is still there when the restart comes
  const long = { registryLeaseSeconds: 60 };
  const a = await startMount(t, c.router('ra', [], long));
  await ok(t, `head -c 256K /dev/urandom | dd of=${q(a.p('disk'))} bs=64k conv=fsync status=none`);
  const want = await sha(t, a.p('disk'));
  const tag = (await c.routers())[0].vpools[0].tag;
  await a.kill9();
  const a2 = await startMount(t, c.router('ra', [], long));
  t.true(logEntries(a2.log, 'replacing the registration of a previous run of this router (same host and state directory)').length > 0, `the registration of the killed daemon was not there any more (more than 60 s to restart?):\n${a2.log}`);
  t.is(logEntries(a2.log, /^taking over vPool/).length, 0, a2.log);
  t.is(await sha(t, a2.p('disk')), want, 'the local restart keeps every fsynced byte');
  const rows = await c.routers();
  t.like(rows[0], { name: 'ra', state: 'alive', pid: a2.pid });
  t.is(rows[0].vpools[0].tag, tag, 'the same owner: the same tag');
  t.is(await a2.stop(), 0);
});
