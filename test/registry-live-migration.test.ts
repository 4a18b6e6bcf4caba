/**
 * The live-migration drill (docs/cluster.md, "Moves"), real etcd, daemons, mounts and TCP: a writer holds the
 * vDisk open on ra (the owner) and one on rb (a follower), as QEMU does while a VM migrates; ra's closes; with
 * no open file on ra's own mount for `autoMoveAfterMs` and rb the only router holding files open, ra hands the
 * vPool to rb by itself. rb's writer sees no error, every acknowledged write of both writers is there, and the
 * vPool stays on rb (the ping-pong guard: ra holds nothing). The metrics of the registry and the link on both.
 */
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { freePort } from './helpers/etcd.js';
import { badBlocks, startWriter } from './helpers/dtl-mount.js';

const test = fuseTest();

/** The value of a metric line `name{…labels…} value` whose labels include `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries((m[2] ?? '').split(',').filter(Boolean).map((kv) => kv.split('=')).map(([k, v]) => [k, v.replace(/^"|"$/g, '')]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return null;
}

test('live migration: writers on ra and rb, ra\'s closes, the vPool moves to rb by itself; every acknowledged write of both is there; metrics', async (t) => {
  const c = await cluster(t);
  const [pa, pb] = [await freePort(), await freePort()];
  const cfg = { autoMove: true, autoMoveAfterMs: 1000, autoMoveHoldMs: 1000 };
  const a = await startMount(t, c.router('ra', ['--metrics', `127.0.0.1:${pa}`], cfg));
  await ok(t, `truncate -s 128M ${q(a.p('vm'))}`);
  const b = await startMount(t, c.router('rb', ['--metrics', `127.0.0.1:${pb}`], cfg));
  // the VM runs on ra; then the migration's destination opens the disk on rb (ra's open first: with nothing open
  // on ra and rb's open, the vPool would move at once — the rule)
  const wa = startWriter(a.p('vm'), 0, 64);
  await wa.waitFor(100);
  const wb = startWriter(b.p('vm'), 16384, 64);
  await Promise.all([wa.waitFor(300), wb.waitFor(300)]);
  // while ra's own mount holds the file open, nothing moves
  await Promise.all([wa.waitFor(wa.acked.length + 200), wb.waitFor(wb.acked.length + 200)]);
  t.is(logEntries(a.log, /^MOVE:/).length, 0, a.log);
  t.deepEqual((await c.routers()).map((x) => [x.name, x.role]), [['ra', 'owner'], ['rb', 'follower']]);

  // the VM's source side lets go (QEMU closes the disk on the source at the end of the migration)
  const forwardedBefore = wb.acked.length;
  await wa.stop();
  t.is(wa.stderr, '');
  await until('rb owns the vPool', async () => (await c.routers()).find((x) => x.name === 'rb')?.role === 'owner');
  t.is(logEntries(a.log, /^MOVE: asking for an automatic move of vPool 'pool' to router 'rb'/).length, 1, a.log);
  t.is(logEntries(a.log, /^MOVE: handed vPool 'pool' over to router 'rb'/).length, 1, a.log);
  t.is(logEntries(a.log, /^MOVE: handing vPool 'pool' over to router 'rb' \(open handles/).length, 1, a.log);
  await until('rb serves it', () => logEntries(b.log, /^MOVE: vPool 'pool' moved here from router 'ra'/).length > 0);
  await until('ra follows rb', () => logEntries(a.log, /^following router 'rb'/).length > 0);
  const n = wb.acked.length;
  await wb.waitFor(Math.min(n + 300, 16384)); // (it ends after 16384 blocks)
  // the ping-pong guard: ra holds nothing, so the vPool stays on rb while rb's writer holds the file
  t.is(logEntries(b.log, /^MOVE: asking/).length, 0, b.log);
  const [ma, mb] = [await ok(t, `curl -s http://127.0.0.1:${pa}/metrics`), await ok(t, `curl -s http://127.0.0.1:${pb}/metrics`)];
  t.is(metric(mb, 'vpoolfs_registry_role', { role: 'owner' }), 1, mb);
  t.is(metric(ma, 'vpoolfs_registry_role', { role: 'follower' }), 1);
  t.is(metric(mb, 'vpoolfs_registry_moves', { direction: 'in' }), 1);
  t.is(metric(ma, 'vpoolfs_registry_moves', { direction: 'out' }), 1);
  t.true(metric(mb, 'vpoolfs_link_calls_forwarded')! >= forwardedBefore, "rb forwarded its writer's calls to ra before the move");
  t.true(metric(ma, 'vpoolfs_link_calls_served')! >= forwardedBefore, 'ra served them');
  t.is(metric(ma, 'vpoolfs_link_connected'), 1, 'ra follows rb over the link');
  t.is(metric(mb, 'vpoolfs_link_connections'), 1, "ra is connected to rb's link");
  t.is(metric(mb, 'vpoolfs_registry_takeovers'), 0);
  await wb.stop();
  t.is(wb.stderr, '', "rb's writer saw no error across the move");
  const acked = [...wa.acked, ...wb.acked];
  // (reading through ra opens the file there: with rb holding nothing then, the vPool may move back — the rule)
  for (const m of [b, a]) {
    const bad = await badBlocks(t, m.p('vm'), acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
  t.is(await a.stop(), 0);
  t.is(await b.stop(), 0);
});
