/**
 * Planned moves of a vPool between routers (docs/cluster.md, "Moves"), real etcd, daemons, mounts and TCP:
 * - `vpoolfs move --vpool pool --to rb` while a checking writer writes through rb's mount (a follower: every call
 *   forwarded to ra) and fio --verify runs through ra's own mount: the CLI prints the progress and the result,
 *   no writer sees an error, every acknowledged write reads back through both mounts; ra then follows rb (its
 *   fio's open file re-opened there by path). Then back with `--vpool pool --to ra`: ownership goes both ways in
 *   place.
 * - refusals, nothing changed: an unknown router, the owner itself, a standby (not a follower), a dead router,
 *   a move while another one is running.
 * - kill -9 of the target right after `vpoolfs move` asked: the move fails (exit 1) and the vPool is served again
 *   by the old owner (the handover abandoned, or done and then taken back from the dead target), its writer sees
 *   no error and every acknowledged write is there.
 * - a sync DTL on both routers, a writer through ra's mount, `vpoolfs move` to rb, then kill -9 of rb: ra takes
 *   the vPool back by itself (the takeover rule: rb's vDisk in sync) and every acknowledged write is there.
 */
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, fuseTest, logEntries, MountHandle, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';
import { fioVerifyCommand } from './helpers/fio-verify.js';
import { connectRegistry } from '../registry/connect.js';
import { requestMove } from '../registry/move.js';

const test = fuseTest();

test('vpoolfs move under a writer on the follower and fio --verify on the owner: no error, every byte, the old owner follows; and back', async (t) => {
  const c = await cluster(t);
  // no automatic move here: the reads through either mount at the end would move the vPool to where they run
  const a = await startMount(t, c.router('ra', [], { autoMove: false }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', [], { autoMove: false }));
  const w = startWriter(b.p('disk'), 0, 64);
  const job = { name: 'fio', rw: 'randwrite' as const, bs: '4k', direct: 1 as const, size: '24M' };
  const fio = sh(fioVerifyCommand(a.mountpoint, job, false), { timeoutMs: 240_000 });
  await w.waitFor(200 + Math.floor(Math.random() * 300));

  const r = await sh(`node ${q(CLI)} move --vpool pool --to rb --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.log(r.stdout.trim());
  t.regex(r.stdout, /^Moving vPool 'pool' from router 'ra' \(owner tag \d+\) to router 'rb'/m);
  t.regex(r.stdout, /^ {2}ra: shipping everything to the backend$/m);
  t.regex(r.stdout, /^Handed over after \d+ ms: router 'rb' owns vPool 'pool' now/m);
  t.regex(r.stdout, /^Router 'rb' serves vPool 'pool' now/m);
  const handed = logEntries(a.log, /^MOVE: handed vPool 'pool' over to router 'rb'/);
  t.is(handed.length, 1, a.log);
  t.log(`ra held its calls for ${String(handed[0].heldMs)} ms of the ${String(handed[0].ms)} ms the handover took`);
  t.is(logEntries(b.log, /^MOVE: router 'ra' handed vPool 'pool' to this router/).length, 1, b.log);
  t.is(logEntries(b.log, /^MOVE: vPool 'pool' moved here from router 'ra'/).length, 1);
  t.is(logEntries(b.log, /^FORCED TAKEOVER/).length, 0, 'the backend claim was released, not taken');
  await until('ra follows rb', () => logEntries(a.log, /^following router 'rb'/).length > 0);

  // (the writer ends after 32768 blocks)
  await w.waitFor(Math.min(w.acked.length + 200, 32768));
  const f = await fio;
  t.is(f.code, 0, `fio through ra across the move: ${f.stderr}`);
  await w.stop();
  t.is(w.stderr, '', 'the writer on rb saw no error');
  for (const m of [b, a]) {
    const bad = await badBlocks(t, m.p('disk'), w.acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
  await ok(t, fioVerifyCommand(b.mountpoint, job, true), 240_000);
  const rows = await c.routers();
  t.deepEqual(rows.map((x) => [x.name, x.state, x.role]), [['ra', 'alive', 'follower'], ['rb', 'alive', 'owner']]);
  t.true(rows.find((x) => x.name === 'rb')!.vdisks.length >= 2, 'rb owns the vDisks');

  // and back, by vPool name: ra opens the vPool again (from the backend: rb held it meanwhile), rb follows
  const back = await sh(`node ${q(CLI)} move --vpool pool --to ra --registry ${q(c.etcd.url)}`);
  t.is(back.code, 0, `${back.stderr}${back.stdout}\nra:\n${a.log.slice(-6000)}`);
  await until('rb follows ra', () => logEntries(b.log, /^following router 'ra'/).length > 1);
  for (const m of [a, b]) {
    const bad = await badBlocks(t, m.p('disk'), w.acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint} after the move back`);
  }
  // what went wrong, if anything did (the daemons' error and warning lines since the move back)
  const since = (log: string) => log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-12).join('\n');
  if (!(t as unknown as { passed: boolean }).passed) t.log(`ra:\n${since(a.log)}\nrb:\n${since(b.log)}`);
  await ok(t, fioVerifyCommand(a.mountpoint, job, true), 240_000);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});

test('refusals: unknown router, the owner itself, not a follower, not alive, a move already running — nothing changes', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra', [], { autoMove: false }));
  await ok(t, `truncate -s 16M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', [], { autoMove: false }));
  // a standby of the vPool: registered, alive, not a follower
  const s = new MountHandle(c.router('rs', ['--standby']));
  t.teardown(() => s.stop(30_000).then(() => undefined));
  await until('rs stands by', () => logEntries(s.log, /^standing by/).length > 0);
  const move = (to: string) => sh(`node ${q(CLI)} move --vpool pool --to ${to} --registry ${q(c.etcd.url)}`);

  let r = await move('rz');
  t.is(r.code, 1);
  t.regex(r.stderr, /unknown router 'rz': the registry has no router of that name/);
  r = await move('ra');
  t.is(r.code, 1);
  t.regex(r.stderr, /router 'ra' owns vPool 'pool' already/);
  r = await move('rs');
  t.is(r.code, 1);
  t.regex(r.stderr, /router 'rs' is not a follower of vPool 'pool' \(it is standby for vPool 'pool'\)/);
  await s.kill9();
  await until('rs expired', async () => (await c.routers()).find((x) => x.name === 'rs')?.state === 'expired');
  r = await move('rs');
  t.is(r.code, 1);
  t.regex(r.stderr, /router 'rs' is not alive \(its registry lease has expired\)/);
  r = await sh(`node ${q(CLI)} move --to rb`);
  t.is(r.code, 1);
  t.regex(r.stderr, /give the path of a file on the vPool \(FILE: that vDisk moves\) or --vpool NAME/);
  t.deepEqual((await c.routers()).filter((x) => x.state === 'alive').map((x) => [x.name, x.role]), [['ra', 'owner'], ['rb', 'follower']]);

  // two requests back to back: the second finds the first running (the owner takes a quarter second to look)
  const etcd = connectRegistry(c.etcd.url);
  t.teardown(() => etcd.close());
  const first = await requestMove(etcd, 'pool', 'rb', 'operator');
  const second = await requestMove(etcd, 'pool', 'rb', 'operator').then(() => null, (err: Error) => err.message);
  t.regex(second ?? 'accepted', /^a move of vPool 'pool' is already running: from router 'ra' to router 'rb'/);
  await until('rb owns the vPool', async () => (await c.routers()).find((x) => x.name === 'rb')?.role === 'owner');
  t.is(logEntries(a.log, /^MOVE: handed vPool 'pool' over to router 'rb'/, { to: 'rb' }).length, 1);
  t.truthy(first.id);
  t.is(await a.stop(), 0);
  t.is(await b.stop(), 0);
});

test('a move with a sync DTL, then kill -9 of the new owner: the old owner takes the vPool back by itself, nothing acknowledged is lost', async (t) => {
  const c = await cluster(t);
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  const cfg = { dtlRetryMs: 300, autoMove: false };
  const a = await startMount(t, c.router('ra', dtl, cfg));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  const b = await startMount(t, c.router('rb', dtl, cfg));
  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(100 + Math.floor(Math.random() * 200));
  const r = await sh(`node ${q(CLI)} move --vpool pool --to rb --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  // rb's DTL in sync (its record says so: the takeover rule lets ra take it back), a few more writes through ra → rb
  await waitDtl(b.p('disk'), (d) => d.state === 'ok_sync', 'ok_sync on rb');
  await w.waitFor(w.acked.length + 100);
  await b.kill9();
  const n = w.acked.length;
  await until('ra takes the vPool back', () => logEntries(a.log, /^took vPool 'pool' over from router 'rb'/).length > 0);
  t.is(logEntries(a.log, /^TAKEOVER: this follower took vPool 'pool' in the registry \(owner tag \d+\) from router 'rb' \(lease expired\)/).length, 1, a.log);
  await w.waitFor(n + 100);
  await w.stop();
  t.is(w.stderr, '', 'the writer on ra saw no error across the move and the takeover');
  const bad = await badBlocks(t, a.p('disk'), w.acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing`);
  t.is(await a.stop(), 0);
});

test('kill -9 of the target right after the move was asked: the old owner serves the vPool again, its writer sees no error, nothing is lost', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb'));
  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(100 + Math.floor(Math.random() * 200));
  const cli = spawn('node', [CLI, 'move', '--vpool', 'pool', '--to', 'rb', '--registry', c.etcd.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => cli.on('close', (code) => resolve(code)));
  await until('the move is asked', () => out.includes('Moving vPool'));
  await b.kill9();
  t.is(await exited, 1, out);
  t.log(out.trim());
  t.regex(out, /not moved: router 'rb' (went away|is not a live follower)|moved to router 'rb', but is owned by router 'ra' now/);
  await until('ra serves the vPool again', async () => (await c.routers()).find((x) => x.name === 'ra')?.role === 'owner');
  await w.waitFor(Math.min(w.acked.length + 100, 32768));
  await w.stop();
  t.is(w.stderr, '', "the writer on ra saw no error");
  t.deepEqual(await badBlocks(t, a.p('disk'), w.acked), []);
  t.true(logEntries(a.log, /^MOVE: .*abandoned/).length + logEntries(a.log, /^took vPool 'pool' over from router 'rb'/).length > 0, a.log);
  t.is(await a.stop(), 0);
});
