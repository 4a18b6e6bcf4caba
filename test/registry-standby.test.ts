/**
 * Automatic takeover by a standby router (`vpoolfs mount --registry … --standby`, docs/cluster.md): router B
 * waits, registered and owning nothing, while A owns the vPool; kill -9 A (writing with a sync DTL): once A's
 * registry lease has expired B takes the vPool over and mounts by itself, and every acknowledged write is there.
 * The time from the kill to B's mount is printed (not asserted).
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, fuseTest, isMounted, logEntries, MountHandle, ok, q, sh, startMount, tempRoot } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';

const test = fuseTest();

test('a standby router takes the vPool over by itself once the owner is killed and its lease expired, with every acknowledged write', async (t) => {
  const c = await cluster(t);
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  const a = await startMount(t, c.router('ra', dtl, { dtlRetryMs: 300 }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');

  const b = new MountHandle({ ...c.router('rb', [...dtl, '--standby'], { dtlRetryMs: 300 }), readyMs: 120_000 });
  t.teardown(() => b.stop(30_000).then(() => undefined));
  while (logEntries(b.log, /^standing by: vPool 'pool' is owned by router 'ra'/).length === 0) {
    if (!b.alive) t.fail(`the standby exited:\n${b.log}`);
    await sleep(100);
  }
  let rows = await c.routers();
  t.like(rows.find((r) => r.name === 'rb'), { state: 'alive', vpools: [], vdisks: [] });
  t.false(await isMounted(b.mountpoint), 'a standby mounts nothing');
  // a second standby, stopped while it waits: exits 0, leaves the registry
  const c2 = new MountHandle(c.router('rc', ['--standby']));
  while (logEntries(c2.log, /^standing by: /).length === 0) await sleep(100);
  c2.child.kill('SIGTERM');
  t.is((await c2.exited).code, 0, c2.log);
  t.true(logEntries(c2.log, 'stopped while standing by: nothing was mounted').length > 0, c2.log);
  t.false((await c.routers()).some((r) => r.name === 'rc'), 'the stopped standby left the registry');

  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(300 + Math.floor(Math.random() * 700));
  const killedAt = Date.now();
  await a.kill9();
  await w.done;
  const acked = [...w.acked];
  await b.waitReady();
  t.log(`the standby mounted ${Date.now() - killedAt} ms after the kill (registry lease 2 s); ${acked.length} writes acknowledged on ra`);
  t.is(logEntries(b.log, /^taking over vPool 'pool' from router 'ra' .* whose registry lease has expired$/).length, 1, b.log);
  t.is(logEntries(b.log, /^standby over: took vPool 'pool' after \d+ ms$/).length, 1, b.log);
  const bad = await badBlocks(t, b.p('disk'), acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing after the takeover`);
  rows = await c.routers();
  t.like(rows.find((r) => r.name === 'ra'), { state: 'expired', vpools: [] });
  t.is(rows.find((r) => r.name === 'rb')?.vpools[0]?.vpool, 'pool');
  t.is(await b.stop(), 0);
});

test('--standby needs --registry', async (t) => {
  const root = await tempRoot(t);
  const r = await sh(`node ${q(CLI)} mount ${q(path.join(root, 'mnt'))} --state ${q(path.join(root, 'state'))} --standby`);
  t.is(r.code, 1);
  t.regex(r.stderr, /--standby needs --registry/);
});
