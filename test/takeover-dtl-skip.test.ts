/**
 * A network cut and the takeover's DTL recovery (dtl-client/recover.ts, `gone` in Reachability;
 * registry/placement.ts): the DTL server on the address of a router whose registry lease has expired is not
 * asked while a live router's server holds the vDisk. Real etcd, real daemons, real DTL servers over TCP, routers
 * A and B each in a network namespace of its own with a DTL server on its address (helpers/netns-cluster.ts):
 *
 * - A owns the vPool, its DTL goes to B's server (sync, in ok_sync); B follows A and is configured with
 *   [A's server, B's server] — A's first, the worst case;
 * - a writer on A's mount, then A's network is cut (its veth down: A and its DTL server unreachable);
 * - B takes over in place: its DTL recovery must not ask A's server (the attempts to it are counted from B's
 *   recovery log, `asked`): without the skip it does, and waits the DTL client's timeout for it. Every write A
 *   acknowledged before the cut reads back through B. The time from the cut to B serving is printed.
 * - the fallback: A's DTL goes to the server on its own address, and A alone is killed (`kill -9`: its host's
 *   DTL server lives on). No live router's server holds the vDisk, so B asks A's after all and replays every
 *   acknowledged write from it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { bridgeForTest } from './helpers/netns.js';
import { netCluster } from './helpers/netns-cluster.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';

const test = fuseTest();

test.serial('A cut off: B\'s DTL recovery does not ask the DTL server on A\'s address (A\'s lease expired), and finds every acknowledged write on its own', async (t) => {
  const bridge = await bridgeForTest(t);
  const { routers, mount } = await netCluster(t, bridge, ['ra', 'rb'], { dtl: 'routers' });
  const [sa, sb] = [routers.ra!.dtl!.address, routers.rb!.dtl!.address];
  const a = await startMount(t, mount('ra', { dtlServers: [sb] }));
  await ok(t, `truncate -s 64M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync' && d.server === sb, 'ok_sync on B\'s server');
  const b = await startMount(t, mount('rb', { dtlServers: [sa, sb] }));
  t.is(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, b.log);

  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(200 + Math.floor(Math.random() * 300));
  const cutAt = Date.now();
  await routers.ra!.cut();
  // A goes on acknowledging writes with its DTL degraded after the cut (not protected, not checked)
  const acked = w.acked.slice();
  const TOOK = /^took vPool 'pool' over from router 'ra'/;
  const deadline = Date.now() + 90_000;
  while (logEntries(b.log, TOOK).length === 0) {
    if (!b.alive) t.fail(`rb exited:\n${b.log}`);
    if (Date.now() > deadline) t.fail(`rb did not take the vPool over within 90 s of the cut:\n${b.log.slice(-3000)}`);
    await sleep(100);
  }
  const stamp = (re: RegExp): number => Date.parse(String(logEntries(b.log, re)[0]!.timestamp));
  const recoveries = logEntries(b.log, /^DTL recovery/);
  const attempts = recoveries.filter((e) => Array.isArray(e.asked) && (e.asked as string[]).includes(sa)).length;
  t.log(`rb serves the vPool ${stamp(TOOK) - cutAt} ms after ra's network was cut (${stamp(TOOK) - stamp(/^TAKEOVER/)} ms of it opening the vPool after its TAKEOVER decision; registry lease 2 s); its DTL recovery asked A's server ${attempts} time(s); ${acked.length} writes acknowledged on ra before the cut`);
  t.true(recoveries.length > 0, `no DTL recovery logged:\n${b.log.slice(-3000)}`);
  t.is(attempts, 0, `rb's DTL recovery asked the server of ra (lease expired):\n${JSON.stringify(recoveries, null, 1)}`);
  for (const e of recoveries) {
    t.deepEqual(e.asked, [sb]);
    t.regex(JSON.stringify(e.notAsked), new RegExp(`${sa.replace(/\./g, '\\.')} \\(not asked: on the address of router 'ra', whose registry lease has expired\\)`));
  }
  t.is(logEntries(b.log, /^DTL recovery: replayed the entries newer than the backend/, { server: sb }).length, 1, b.log.slice(-3000));
  const bad = await badBlocks(t, b.p('disk'), acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} writes acknowledged on ra missing through rb`);
  await w.stop().catch(() => undefined);
  await a.kill9();
});

test.serial('A killed alone, its vDisk on the DTL server of its own address: no live router\'s server holds it, so B asks that one after all and every acknowledged write is there', async (t) => {
  const bridge = await bridgeForTest(t);
  const { routers, mount } = await netCluster(t, bridge, ['ra', 'rb'], { dtl: 'routers' });
  const [sa, sb] = [routers.ra!.dtl!.address, routers.rb!.dtl!.address];
  const a = await startMount(t, mount('ra', { dtlServers: [sa] }));
  await ok(t, `truncate -s 64M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync' && d.server === sa, 'ok_sync on A\'s own server');
  const b = await startMount(t, mount('rb', { dtlServers: [sa, sb] }));
  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(200 + Math.floor(Math.random() * 300));
  await a.kill9();
  const acked = w.acked.slice();
  await w.stop().catch(() => undefined);
  while (logEntries(b.log, /^took vPool 'pool' over from router 'ra'/).length === 0) {
    if (!b.alive) t.fail(`rb exited:\n${b.log}`);
    await sleep(100);
  }
  t.is(logEntries(b.log, /^DTL recovery: no DTL server of a live router holds this vDisk; asking those of routers whose registry lease has expired/, { servers: [sa] }).length, 1, b.log.slice(-3000));
  const replayed = logEntries(b.log, /^DTL recovery: replayed the entries newer than the backend/);
  t.is(replayed.length, 1, b.log.slice(-3000));
  t.like(replayed[0], { server: sa, asked: [sb, sa] });
  const bad = await badBlocks(t, b.p('disk'), acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} writes acknowledged on ra missing through rb`);
});
