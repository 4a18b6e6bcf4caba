/**
 * Followers reach a delegated vDisk straight at its delegate (docs/cluster.md, "Ownership per vDisk";
 * tools/daemon/direct-routes.ts), through real daemons, mounts, etcd and TCP: ra owns the vPool, rb and rc follow
 * it, each with `--metrics`. Checking writers write `/disk` through rc's and rb's mounts while it moves to rb, then
 * to rc, then back to ra. While rb serves it, rc's writes go straight to rb: rc's `vpoolfs_link_calls_direct` grows
 * by at least the writes rc made meanwhile and ra's `vpoolfs_link_calls_served` by less than half of them (through
 * ra every write would be one call there; what ra still serves is the tree's half of a getattr); while rc serves it,
 * the same for rb's writes. No writer error; every acknowledged write of both writers reads back through all three
 * mounts. And kill -9 of the delegate (a sync DTL) after a follower wrote straight to it: the follower's route falls
 * back to the owner, which takes the vDisk back with the DTL's copy of what the delegate had not shipped; every
 * write the follower had acknowledged, and its writes after, read back through the owner and the follower.
 */
import { CLI, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { cluster, recordedSync } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { badBlocks, startWriter, type Writer } from './helpers/dtl-mount.js';
import { syncDtlOwner } from './helpers/vdisk-move.js';

const test = fuseTest();

async function metric(m: MountHandle, name: string): Promise<number> {
  const address = logEntries(m.log, 'metrics listening')[0]?.address;
  if (address === undefined) throw new Error(`no metrics address in the log of ${m.mountpoint}`);
  const text = await fetch(`http://${String(address)}/metrics`).then((r) => r.text());
  const v = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(text)?.[1];
  if (v === undefined) throw new Error(`no ${name} in the metrics of ${m.mountpoint}`);
  return Number(v);
}

test.serial('followers write a delegated vDisk straight at its delegate, not through the owner: counted, every byte', async (t) => {
  const c = await cluster(t);
  const metrics = ['--metrics', '127.0.0.1:0'];
  const a = await startMount(t, c.router('ra', metrics));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const [b, cc] = await Promise.all([startMount(t, c.router('rb', metrics)), startMount(t, c.router('rc', metrics))]);
  const move = async (to: string) => {
    const r = await sh(`node ${q(CLI)} move ${q(a.p('disk'))} --to ${to} --registry ${q(c.etcd.url)}`);
    t.is(r.code, 0, r.stderr + r.stdout);
    t.regex(r.stdout, new RegExp(`^Moved: vDisk /disk is served by router '${to}'`, 'm'));
  };
  const direct = (m: MountHandle, to: string) => logEntries(m.log, `DIRECT: vDisk /disk's calls go straight to router '${to}', its delegate, not through the vPool's owner`).length;
  /** `w` writes at least `n` more blocks; true: they went straight from `from` (not through ra). */
  const straight = async (w: Writer, from: MountHandle, n: number, what: string) => {
    const [served0, direct0, acked0] = [await metric(a, 'vpoolfs_link_calls_served'), await metric(from, 'vpoolfs_link_calls_direct'), w.acked.length];
    await w.waitFor(acked0 + n);
    const [served1, direct1, acked1] = [await metric(a, 'vpoolfs_link_calls_served'), await metric(from, 'vpoolfs_link_calls_direct'), w.acked.length];
    const writes = acked1 - acked0;
    t.log(`${what}: ${writes} writes, ${direct1 - direct0} calls straight to the delegate, ${served1 - served0} calls served by ra meanwhile`);
    t.true(direct1 - direct0 >= writes, `${what}: every write went straight to the delegate`);
    t.true(served1 - served0 < writes / 2, `${what}: the writes did not pass ra`);
  };

  const wc = startWriter(cc.p('disk'), 0, 64);
  const wb = startWriter(b.p('disk'), 16384, 64);
  await wc.waitFor(100);
  await wb.waitFor(100);

  await move('rb');
  await until('rc routes /disk straight to rb', async () => direct(cc, 'rb') === 1);
  t.is(direct(b, 'rb'), 0, 'rb serves it itself');
  await straight(wc, cc, 300, 'rc while rb serves /disk');

  await move('rc');
  await until('rb routes /disk straight to rc', async () => direct(b, 'rc') === 1);
  // rc polls the registry on its own (every quarter second): it may see the move after rb did
  await until('rc dropped its route to rb', async () => logEntries(cc.log, /^DIRECT: vDisk \/disk's calls go to the vPool's owner again/).length >= 1);
  await straight(wb, b, 300, 'rb while rc serves /disk');

  await move('ra');
  await until('rb routes /disk to ra again', async () => logEntries(b.log, /^DIRECT: vDisk \/disk's calls go to the vPool's owner again/).length >= 1);
  await wc.waitFor(wc.acked.length + 200);
  await wb.waitFor(wb.acked.length + 200);
  await wc.stop();
  await wb.stop();
  t.is(wc.stderr, '', 'the writer on rc saw no error');
  t.is(wb.stderr, '', 'the writer on rb saw no error');
  for (const m of [a, b, cc]) {
    for (const w of [wc, wb]) {
      const bad = await badBlocks(t, m.p('disk'), w.acked);
      t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
    }
  }
  const since = (log: string) => log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-15).join('\n');
  if (!(t as unknown as { passed: boolean }).passed) t.log(`ra:\n${since(a.log)}\nrb:\n${since(b.log)}\nrc:\n${since(cc.log)}`);
  t.is(await cc.stop(), 0);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});

test.serial('kill -9 of the delegate a follower wrote straight to (sync DTL): the follower falls back to the owner, which takes it back: every acknowledged write', async (t) => {
  const c = await cluster(t);
  const { dtl, a } = await syncDtlOwner(t, c);
  const [b, cc] = await Promise.all([startMount(t, c.router('rb', dtl)), startMount(t, c.router('rc', dtl))]);
  const r = await sh(`node ${q(CLI)} move ${q(a.p('disk'))} --to rb --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  await until('rc routes /disk straight to rb', async () => logEntries(cc.log, /^DIRECT: vDisk \/disk's calls go straight to router 'rb'/).length === 1);
  await recordedSync(c, 'rb', '/disk');
  const w1 = startWriter(cc.p('disk'), 0, 0);
  await w1.waitFor(300 + Math.floor(Math.random() * 300));
  await w1.stop();
  t.is(w1.stderr, '', 'the writer on rc saw no error');
  await b.kill9();
  await until('rc falls back to ra', async () => logEntries(cc.log, /^DIRECT: the delegate link of router 'rb' broke/).length === 1);
  await until('ra takes /disk back from the dead rb', async () => logEntries(a.log, /^TAKEBACK: vDisk \/disk taken back from dead router 'rb'/).length === 1).catch((err: unknown) => {
    t.log(`ra's log (TAKEBACK, MOVE, warnings):\n${a.log.split('\n').filter((l) => /TAKEBACK|MOVE|"level":"(error|warn)"/.test(l)).slice(-30).join('\n')}`);
    throw err;
  });
  const w2 = startWriter(cc.p('disk'), 16384, 64);
  await w2.waitFor(300);
  await w2.stop();
  t.is(w2.stderr, '', 'the writer on rc after the takeback saw no error');
  for (const m of [a, cc]) {
    for (const w of [w1, w2]) {
      const bad = await badBlocks(t, m.p('disk'), w.acked);
      t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
    }
  }
  t.is(await cc.stop(), 0);
  t.is(await a.stop(), 0);
});
