/**
 * etcd down (issue 15, docs/cluster.md): the owner keeps serving what it owns — reads, writes, fsync, and
 * shipping to the backend — past its registry lease; no other router can take anything over (its mount is
 * refused: the registry does not answer); when etcd is back the owner registers again, still owning its vPool,
 * and `router list` shows it alive with its vDisk.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { cluster, refusedMount } from './helpers/registry.js';

const test = fuseTest();
const sha = async (t: Parameters<typeof ok>[0], file: string): Promise<string> => (await ok(t, `sha256sum ${q(file)}`)).split(' ')[0];

async function shipped(t: Parameters<typeof ok>[0], file: string): Promise<void> {
  for (;;) {
    const info = JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(file)}`)) as { dirtyBytes: number; uploadBacklog: { tlogs: number } };
    if (info.dirtyBytes === 0 && info.uploadBacklog.tlogs === 0) return;
    await sleep(100);
  }
}

test('etcd down: the owner keeps serving and shipping past its lease, nobody takes over; etcd back: it registers again, still the owner', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `head -c 1M /dev/urandom | dd of=${q(a.p('disk'))} bs=64k conv=fsync status=none`);
  const tag = (await c.routers())[0].vpools[0].tag;

  await c.etcd.stop();
  // past the lease: etcd3 gives it up after twice its TTL without an answer
  while (logEntries(a.log, /^the registry lease is lost/).length === 0) await sleep(100);
  await ok(t, `head -c 512K /dev/urandom | dd of=${q(a.p('disk'))} bs=64k seek=2 conv=notrunc,fsync status=none`);
  await shipped(t, a.p('disk'));
  const want = await sha(t, a.p('disk'));
  t.is(logEntries(a.log, /^FENCED/).length, 0, a.log);

  // no takeover without etcd
  const r = await refusedMount(c.router('rb'));
  t.is(r.code, 1, r.log);
  t.regex(r.log, /the registry etcd:\/\/127\.0\.0\.1:\d+ does not answer/);
  t.is(await sha(t, a.p('disk')), want);

  // etcd back: A registers again (replacing its own registration of the old lease) and still owns the vPool
  await c.etcd.start();
  while (logEntries(a.log, 'registered again in the registry').length === 0) await sleep(100);
  let rows = await c.routers();
  while (rows.find((x) => x.name === 'ra')?.state !== 'alive' || rows[0].vdisks.length !== 1) {
    await sleep(100);
    rows = await c.routers();
  }
  t.deepEqual(rows.map((x) => [x.name, x.state, x.vpools[0]?.tag, x.vdisks[0]?.path]), [['ra', 'alive', tag, '/disk']]);
  t.is(logEntries(a.log, /^OWNERSHIP LOST/).length, 0, a.log);
  await ok(t, `head -c 64K /dev/urandom | dd of=${q(a.p('disk'))} bs=64k seek=20 conv=notrunc,fsync status=none`);
  const now = await sha(t, a.p('disk'));
  const r2 = await refusedMount(c.router('rb', ['--no-follow']));
  t.regex(r2.log, /vPool 'pool' is owned by router 'ra'.*which is alive/);
  t.is(await a.stop(), 0);
  const b = await startMount(t, c.router('rb'));
  t.is(await sha(t, b.p('disk')), now);
  t.is(await b.stop(), 0);
});
