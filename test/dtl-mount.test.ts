/**
 * DESIGN §4 through real mounts (child processes) and real DTL server processes:
 * - host loss: router A (a mount with --dtl sync/async), a writer records each acknowledged write; kill -9
 *   A, delete A's state directory, mount the vPool on router C (another state directory, --router C) with
 *   the same backend and DTL server: sync — every acknowledged write is there; async — every write
 *   acknowledged before the last completed fsync. Several rounds, random kill points.
 * - the DTL server killed mid-run: writes go on, `degraded` in user.vdisk.info; back: `catchup` then
 *   `ok_sync`; then a host loss still loses nothing.
 * - two servers, the first dies: the vDisk moves to the second; a host loss after that loses nothing.
 * - user.vdisk.dtl changes the mode live; a bad value is EINVAL; each vDisk keeps its mode on another router.
 */
import type { ExecutionContext } from 'ava';
import { open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startDtlServer, type DtlServerProcess } from './helpers/dtl-server.js';
import { badBlocks, dtlInfo, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { freshLayout, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';

const test = fuseTest();

interface Setup {
  root: string;
  backend: string;
  config: string;
}

async function setup(t: ExecutionContext): Promise<Setup> {
  const l = await freshLayout(t);
  const config = path.join(l.root, 'vpool.json');
  // small SCOs and TLogs shipped often, so kills land among uploads, corks and DTL trims; quick DTL retries
  await writeFile(config, JSON.stringify({ scoClusters: 64, tlogScos: 2, scoMaxAgeMs: 300, dtlRetryMs: 300 }));
  return { root: l.root, backend: l.backend, config };
}

const m2p = (m: MountHandle, name: string) => m.p(name);

function mountOn(t: ExecutionContext, s: Setup, router: string, servers: string, mode: string, extra: string[] = []): Promise<MountHandle> {
  return startMount(t, {
    mountpoint: path.join(s.root, `mnt-${router}`), state: path.join(s.root, `state-${router}`), backend: s.backend,
    extraArgs: ['--vpool', 'vp', '--router', router, '--dtl', mode, '--dtl-server', servers, '--config', s.config, ...extra],
  });
}

/** Kills router `m` (kill -9) and deletes its state directory: the host is lost. */
async function loseHost(m: MountHandle): Promise<void> {
  await m.kill9();
  await sh(`rm -rf ${q(m.opts.state)}`);
}

/** Mounts on a new router and checks the writes `mustHave` are there. */
async function recoverAndCheck(t: ExecutionContext, s: Setup, router: string, servers: string, mode: string, mustHave: number[]): Promise<MountHandle> {
  // the lost router's claim on the backend is still live: the operator takes the vPool with --force (docs/cluster.md)
  const c = await mountOn(t, s, router, servers, mode, ['--force']);
  t.regex(c.log, /DTL recovery: replayed the entries newer than the backend|DTL recovery: the DTL holds nothing/);
  const bad = await badBlocks(t, c.p('disk'), mustHave);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${mustHave.length} protected writes missing or wrong after the host loss (router ${router})`);
  return c;
}

for (const mode of ['sync', 'async'] as const) {
  test(`host loss in ${mode}: mounted on another router, every ${mode === 'sync' ? 'acknowledged write' : 'write acknowledged before the last fsync'} is there; several rounds`, async (t) => {
    const s = await setup(t);
    const srv = await startDtlServer(t, path.join(s.root, 'dtl'));
    const rounds = Number(process.env.VPOOLFS_DTL_ROUNDS ?? 3);
    let next = 0;
    let replayed = 0;
    for (let round = 0; round < rounds; round++) {
      const a = await mountOn(t, s, `a${round}`, srv.address, mode);
      if (round === 0) await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
      await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
      const w = startWriter(a.p('disk'), next, mode === 'async' ? 50 : 0);
      const kill = 200 + Math.floor(Math.random() * 1500);
      await w.waitFor(kill);
      await loseHost(a);
      await w.done;
      const acked = [...w.acked];
      const mustHave = mode === 'sync' ? acked : acked.filter((i) => i <= w.lastSynced);
      t.true(mustHave.length > 0, `round ${round}: ${acked.length} acks, last fsync ${w.lastSynced}`);
      const c = await recoverAndCheck(t, s, `c${round}`, srv.address, mode, mustHave);
      for (const e of logEntries(c.log, 'DTL recovery: replayed the entries newer than the backend')) replayed += Number(e.entries);
      t.is(await c.stop(), 0);
      next = acked[acked.length - 1] + 2;
    }
    t.true(replayed > 0, 'the recoveries replayed entries from the DTL');
    t.log(`${mode}: ${rounds} rounds, ${replayed} DTL entries replayed`);
  });
}

test('the DTL server killed mid-run: writes go on, degraded; back: catchup then ok_sync; a host loss after that loses nothing', async (t) => {
  const s = await setup(t);
  const srv = await startDtlServer(t, path.join(s.root, 'dtl'));
  const a = await mountOn(t, s, 'a', srv.address, 'sync');
  const disk = a.p('disk');
  await ok(t, `truncate -s 128M ${q(disk)}`);
  await waitDtl(disk, (d) => d.state === 'ok_sync', 'ok_sync');
  const w = startWriter(disk, 0, 0);
  await w.waitFor(300);
  await srv.kill9();
  t.like(await waitDtl(disk, (d) => d.state === 'degraded', 'degraded'), { mode: 'sync', state: 'degraded', server: null });
  const during = w.acked.length;
  await w.waitFor(during + 500);
  t.is(w.stderr, '', 'no write failed while the DTL was away');
  t.true(logEntries(a.log, /DTL degraded/).length > 0, 'the outage is logged');
  await srv.start();
  t.like(await waitDtl(disk, (d) => d.state === 'ok_sync', 'ok_sync again'), { state: 'ok_sync', server: srv.address });
  const states = logEntries(a.log, 'DTL state').map((e) => e.to);
  const i = states.lastIndexOf('degraded');
  t.deepEqual(states.slice(i, i + 3), ['degraded', 'catchup', 'ok_sync'], `transitions: ${states.join(' → ')}`);
  await w.waitFor(w.acked.length + 300);
  await loseHost(a);
  await w.done;
  await recoverAndCheck(t, s, 'c', srv.address, 'sync', [...w.acked]);
});

test('two DTL servers, the first dies: the vDisk moves to the second; a host loss after that loses nothing', async (t) => {
  const s = await setup(t);
  const first = await startDtlServer(t, path.join(s.root, 'dtl1'));
  const second = await startDtlServer(t, path.join(s.root, 'dtl2'));
  const servers = `${first.address},${second.address}`;
  const a = await mountOn(t, s, 'a', servers, 'sync');
  const disk = a.p('disk');
  await ok(t, `truncate -s 128M ${q(disk)}`);
  t.is((await waitDtl(disk, (d) => d.state === 'ok_sync', 'ok_sync')).server, first.address);
  const w = startWriter(disk, 0, 0);
  await w.waitFor(300);
  await first.kill9();
  await waitDtl(disk, (d) => d.state === 'ok_sync' && d.server === second.address, `ok_sync on ${second.address}`);
  await w.waitFor(w.acked.length + 300);
  t.is(w.stderr, '');
  await loseHost(a);
  await w.done;
  await recoverAndCheck(t, s, 'c', servers, 'sync', [...w.acked]);
});

test('async, local restart (kill -9, state kept): every acknowledged write is there, nothing is replayed over it; a host loss after that loses nothing', async (t) => {
  const s = await setup(t);
  const srv = await startDtlServer(t, path.join(s.root, 'dtl'));
  const a = await mountOn(t, s, 'a', srv.address, 'async');
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  const w1 = startWriter(a.p('disk'), 0, 50);
  await w1.waitFor(800 + Math.floor(Math.random() * 800));
  await a.kill9();
  await w1.done;
  const first = [...w1.acked];
  const again = await mountOn(t, s, 'a', srv.address, 'async');
  t.deepEqual(logEntries(again.log, /^DTL recovery/), [], 'a local restart replays nothing from the DTL');
  t.deepEqual(await badBlocks(t, again.p('disk'), first), [], 'every acknowledged write survived the local restart');
  await waitDtl(again.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  t.true(logEntries(again.log, /^DTL caught up/).length > 0, 'the history not in the backend was shipped again');
  const w2 = startWriter(again.p('disk'), first[first.length - 1] + 2, 50);
  await w2.waitFor(300);
  await loseHost(again);
  await w2.done;
  await recoverAndCheck(t, s, 'c', srv.address, 'async', [...first, ...w2.acked.filter((i) => i <= w2.lastSynced)]);
});

test('a DTL server with a secret: the mount with the same secret file attaches; one with a wrong secret stays degraded, logged on both sides, I/O goes on', async (t) => {
  const s = await setup(t);
  const secret = path.join(s.root, 'dtl.secret');
  const wrong = path.join(s.root, 'wrong.secret');
  await writeFile(secret, 'a shared secret of the routers and the DTL\n');
  await writeFile(wrong, 'not the shared secret of the routers at all\n');
  const srv = await startDtlServer(t, path.join(s.root, 'dtl'), ['--secret-file', secret]);
  const good = await startMount(t, {
    mountpoint: path.join(s.root, 'mnt-good'), state: path.join(s.root, 'state-good'), backend: s.backend,
    extraArgs: ['--vpool', 'vp', '--router', 'good', '--dtl', 'sync', '--dtl-server', srv.address, '--dtl-secret-file', secret],
  });
  await ok(t, `truncate -s 16M ${q(good.p('disk'))} && dd if=/dev/urandom of=${q(good.p('disk'))} bs=4k count=64 conv=notrunc,fsync status=none`);
  t.like(await waitDtl(good.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'sync', server: srv.address });
  t.is(await good.stop(), 0);
  const bad = await startMount(t, {
    mountpoint: path.join(s.root, 'mnt-bad'), state: path.join(s.root, 'state-bad'), backend: `file://${path.join(s.root, 'backend2')}`,
    extraArgs: ['--vpool', 'vp2', '--router', 'bad', '--dtl', 'sync', '--dtl-server', srv.address, '--dtl-secret-file', wrong, '--metrics', '127.0.0.1:0'],
  });
  await ok(t, `truncate -s 16M ${q(bad.p('disk'))} && dd if=/dev/urandom of=${q(bad.p('disk'))} bs=4k count=64 conv=notrunc,fsync status=none`);
  t.like(await waitDtl(bad.p('disk'), (d) => d.state === 'degraded', 'degraded'), { mode: 'sync', server: null });
  t.true(logEntries(bad.log, /DTL degraded/).length > 0);
  t.regex(srv.output, /DTL client refused: wrong secret/);
  // the state is in the metrics too, for the vDisks open right now
  const fh = await open(bad.p('disk'), 'r');
  try {
    const address = logEntries(bad.log, 'metrics listening')[0]?.address;
    t.truthy(address, bad.log);
    const text = await fetch(`http://${address}/metrics`).then((r) => r.text());
    t.regex(text, /vpoolfs_vdisk_dtl\{mode="sync",state="degraded",vpool="vp2"\} 1/);
    t.regex(text, /vpoolfs_vdisk_dtl\{mode="sync",state="ok_sync",vpool="vp2"\} 0/);
  } finally {
    await fh.close();
  }
});

test('user.vdisk.dtl changes the mode live; a bad value is EINVAL; async without a DTL server is EINVAL', async (t) => {
  const s = await setup(t);
  const srv: DtlServerProcess = await startDtlServer(t, path.join(s.root, 'dtl'));
  const a = await mountOn(t, s, 'a', srv.address, 'none');
  const disk = a.p('disk');
  await ok(t, `truncate -s 16M ${q(disk)}`);
  t.deepEqual(await dtlInfo(disk), { mode: 'none', state: 'ok_standalone', server: null });
  await ok(t, `setfattr -n user.vdisk.dtl -v async ${q(disk)}`);
  t.like(await waitDtl(disk, (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'async', server: srv.address });
  await ok(t, `setfattr -n user.vdisk.dtl -v sync ${q(disk)} && dd if=/dev/urandom of=${q(disk)} bs=4k count=100 conv=notrunc,fsync status=none`);
  t.like(await waitDtl(disk, (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'sync' });
  for (const bad of ['fast', 'SYNC', '', 'sync ']) {
    const r = await sh(`setfattr -n user.vdisk.dtl -v ${q(bad)} ${q(disk)}`);
    t.not(r.code, 0, `value ${JSON.stringify(bad)}`);
    t.regex(r.stderr, /Invalid argument/, `value ${JSON.stringify(bad)}: ${r.stderr}`);
  }
  t.is((await dtlInfo(disk)).mode, 'sync');
  await ok(t, `truncate -s 8M ${q(m2p(a, 'other'))} && setfattr -n user.vdisk.dtl -v none ${q(disk)}`);
  t.deepEqual(await dtlInfo(disk), { mode: 'none', state: 'ok_standalone', server: null });
  await ok(t, `setfattr -n user.vdisk.dtl -v sync ${q(m2p(a, 'other'))}`);
  t.is(await a.stop(), 0);
  // each vDisk's mode is kept across a restart of the same router (the mount default is none)
  const again = await mountOn(t, s, 'a', srv.address, 'none');
  t.is((await dtlInfo(again.p('disk'))).mode, 'none');
  t.like(await waitDtl(again.p('other'), (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'sync', server: srv.address });
  t.is(await again.stop(), 0);
  // and on another router, from the backend alone: each vDisk keeps its mode, whatever that router's --dtl
  const c = await mountOn(t, s, 'c', srv.address, 'async');
  t.deepEqual(await dtlInfo(c.p('disk')), { mode: 'none', state: 'ok_standalone', server: null });
  t.like(await waitDtl(c.p('other'), (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'sync', server: srv.address });
  await ok(t, `truncate -s 4M ${q(m2p(c, 'new'))}`);
  t.like(await waitDtl(c.p('new'), (d) => d.state === 'ok_sync', 'ok_sync'), { mode: 'async' }, 'a new vDisk takes the mount default');
  t.is(await c.stop(), 0);
  const a2 = await startMount(t, { mountpoint: a.opts.mountpoint, state: a.opts.state, backend: s.backend });
  t.like(await dtlInfo(a2.p('other')), { mode: 'none', state: 'ok_standalone' }, 'no DTL server: none');
  const r = await sh(`setfattr -n user.vdisk.dtl -v async ${q(a2.p('disk'))}`);
  t.regex(r.stderr, /Invalid argument/, 'async without --dtl-server');
});
