/**
 * Ownership per vDisk when a router dies, through real daemons, mounts, etcd and TCP (docs/cluster.md,
 * "Ownership per vDisk"):
 *
 * - kill -9 of the vPool's owner ra while its vDisk /disk is delegated to rb and rb's writer writes it; ra is
 *   started again on the same state directory. ra's start must not open /disk itself (it would rebuild it
 *   without a fence and number TLogs over rb's): either ra routes /disk to rb again, or rb took the vPool over
 *   meanwhile (its delegate side closed /disk first and its owner start took it back). Either way the writer sees
 *   no error, every acknowledged write reads back through both mounts and through a third router rebuilding the
 *   vPool from the backend.
 * - kill -9 of ra without a restart: rb takes the vPool over; its delegate side ships and closes /disk first, its
 *   owner start takes it back (a new owner tag, fenced); rb's writer goes on without an error.
 * - kill -9 of the delegate rb (a sync DTL on a real DTL server) under its writer: ra sees rb's registration go
 *   and takes /disk back by itself (the DTL recovery of rb's unshipped writes); every acknowledged write reads
 *   back through ra and after a rebuild from the backend. Without a DTL and with writes unshipped, ra does not take
 *   it back by itself: it logs what would be lost and the vDisk answers an error, until `vpoolfs move FILE --to ra
 *   --force` (the operator's consent) takes it back.
 * - the same refusal survives the owner's clean stop: its release keeps the dead delegate's record, so the owner
 *   started again — and another router after it — meets the same refusal and the same `--force`.
 * - a takeback whose open fails (the backend refusing when the owner takes /disk back from the dead delegate):
 *   tried again with a back-off, BUSY meanwhile (never EIO), served once the backend is back, every byte.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { CLI, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { cluster, type Cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { badBlocks, startWriter, type Writer } from './helpers/dtl-mount.js';
import { startDtlServer } from './helpers/dtl-server.js';
import type { ExecutionContext } from 'ava';

const test = fuseTest();

async function moveTo(t: ExecutionContext, c: Cluster, file: string, to: string): Promise<void> {
  const r = await sh(`node ${q(CLI)} move ${q(file)} --to ${to} --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.log(r.stdout.trim().split('\n').pop());
}

/** Every acknowledged block of `w` through each of `mounts`. */
async function allThere(t: ExecutionContext, w: Writer, mounts: MountHandle[]): Promise<void> {
  for (const m of mounts) {
    const bad = await badBlocks(t, m.p('disk'), w.acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
}

/** The logs' warnings and errors, on failure. */
function explain(t: ExecutionContext, mounts: Record<string, MountHandle>): void {
  if ((t as unknown as { passed: boolean }).passed) return;
  for (const [n, m] of Object.entries(mounts)) t.log(`${n}:\n${m.log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-25).join('\n')}`);
}

test.serial('kill -9 of the vPool\'s owner while a vDisk is delegated, started again: the delegate keeps its vDisk (or it is taken back fenced), no error, every byte', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await ok(t, `truncate -s 16M ${q(a.p('other'))}`);
  const b = await startMount(t, c.router('rb'));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 64);
  await wb.waitFor(200 + Math.floor(Math.random() * 300));

  await a.kill9();
  const a2 = await startMount(t, c.router('ra'));
  const owner = (await c.routers()).find((r) => r.vpools.some((v) => v.vpool === 'pool'))!.name;
  t.log(`owner after ra's restart: ${owner}`);
  if (owner === 'ra') {
    // ra's start left /disk to rb: not opened here, routed there
    t.is(logEntries(a2.log, /^vDisk \/disk stays served by router 'rb'/).length, 1, a2.log.slice(-3000));
  } else {
    // rb took the vPool over: its delegate side closed /disk, its owner start took it back, fenced
    t.is(logEntries(b.log, /^TAKEBACK: vDisk \/disk taken back from router 'rb' \(this router/).length, 1, b.log.slice(-3000));
  }
  t.is(logEntries(a2.log, 'vDisk handed over to router').length, 0);
  await wb.waitFor(wb.acked.length + 300);
  await ok(t, `truncate -s 20M ${q(a2.p('other'))}`);
  await wb.stop();
  t.is(wb.stderr, '', 'the writer on rb saw no error');
  await allThere(t, wb, [a2, b]);

  // a rebuild from the backend: both stop cleanly (everything shipped), a third router with a fresh state opens the vPool
  t.is(await (owner === 'ra' ? a2 : b).stop(), 0);
  t.is(await (owner === 'ra' ? b : a2).stop(), 0);
  const rc = await startMount(t, c.router('rc'));
  await allThere(t, wb, [rc]);
  explain(t, { ra: a, ra2: a2, rb: b, rc });
});

test.serial('kill -9 of the delegate with a sync DTL: the owner takes its vDisk back by itself, every acknowledged write is there', async (t) => {
  const c = await cluster(t);
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  const a = await startMount(t, c.router('ra', dtl));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', dtl));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 0);
  await wb.waitFor(300 + Math.floor(Math.random() * 300));
  // rb records its vDisk's protection as it changes (the owner judges the takeback from it)
  await until('rb records /disk under a sync DTL', async () => {
    const rows = await c.routers();
    const d = rows.find((r) => r.name === 'rb')?.vdisks.find((v) => v.path === '/disk') as { dtl?: { mode: string } } | undefined;
    return d?.dtl?.mode === 'sync';
  });
  await b.kill9();
  await wb.stop(); // its mount is gone: the writer ends with an error, what it acknowledged counts
  t.log(`${wb.acked.length} writes acknowledged by rb before its kill -9`);

  await until('ra takes /disk back from the dead rb', async () => logEntries(a.log, /^TAKEBACK: vDisk \/disk taken back from dead router 'rb'/).length === 1);
  const rows = await c.routers();
  t.is(rows.find((r) => r.name === 'ra')?.vdisks.find((v) => v.path === '/disk')?.tag !== undefined, true, 'the record is ra\'s again');
  await allThere(t, wb, [a]);

  t.is(await a.stop(), 0);
  const rc = await startMount(t, c.router('rc', dtl));
  await allThere(t, wb, [rc]);
  explain(t, { ra: a, rb: b, rc });
});

test.serial('kill -9 of the vPool\'s owner, its delegate takes the vPool over: it ships and closes its delegated vDisk first, then takes it back fenced; its writer sees no error, every byte', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb'));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 64);
  await wb.waitFor(200 + Math.floor(Math.random() * 300));

  await a.kill9();
  await until('rb took the vPool over and took /disk back', () => logEntries(b.log, /^TAKEBACK: vDisk \/disk taken back from router 'rb' \(this router/).length === 1);
  t.is(logEntries(b.log, /^MOVE: closed delegated vDisk \/disk: this router opens vPool 'pool' as its owner/).length, 1);
  t.deepEqual((await c.routers()).filter((r) => r.vpools.some((v) => v.vpool === 'pool')).map((r) => r.name), ['rb'], 'rb owns the vPool');
  await wb.waitFor(wb.acked.length + 300);
  await wb.stop();
  t.is(wb.stderr, '', 'the writer on rb saw no error');
  await allThere(t, wb, [b]);

  t.is(await b.stop(), 0);
  const rc = await startMount(t, c.router('rc'));
  await allThere(t, wb, [rc]);
  explain(t, { ra: a, rb: b, rc });
});

test.serial('kill -9 of the delegate with unshipped writes and no DTL: the owner does not take its vDisk back by itself, says what would be lost, the vDisk answers an error, not stale data; vpoolfs move --to <owner> --force takes it back', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 16M ${q(a.p('disk'))}`);
  // rb ships an open SCO only after 10 minutes: its writes stay in its write cache (and no DTL has them)
  const b = await startMount(t, c.router('rb', [], { scoMaxAgeMs: 600_000 }));
  await moveTo(t, c, a.p('disk'), 'rb');
  await ok(t, `dd if=/dev/urandom of=${q(b.p('disk'))} bs=4096 count=4 conv=notrunc status=none`);
  await until('rb records /disk unshipped without a DTL', async () => {
    const d = (await c.routers()).find((r) => r.name === 'rb')?.vdisks.find((v) => v.path === '/disk') as { dtl?: { mode: string; dirty: boolean } } | undefined;
    return d?.dtl?.mode === 'none' && d.dtl.dirty;
  });
  await b.kill9();
  await until('ra refuses to take /disk back from the dead rb', () => logEntries(a.log, /^vDisk \/disk stays unavailable: vDisk \/disk is not taken back automatically from dead router 'rb'/).length > 0);
  const rows = await c.routers();
  t.deepEqual(rows.find((r) => r.name === 'rb')?.vdisks.map((v) => v.path), ['/disk'], 'the record stays the dead rb\'s');
  const r = await sh(`dd if=${q(a.p('disk'))} of=/dev/null bs=4096 count=1 status=none`);
  t.not(r.code, 0, 'a read of /disk through ra fails (it is not served from what the backend has)');
  t.log(r.stderr.trim());
  t.is(logEntries(a.log, /^TAKEBACK: vDisk \/disk/).length, 0);

  // the operator's consent: without --force the move back is refused naming it; with it, /disk is ra's again
  const move = (extra: string) => sh(`node ${q(CLI)} move ${q(a.p('disk'))} --to ra --registry ${q(c.etcd.url)} ${extra}`);
  const refused = await move('');
  t.is(refused.code, 1, refused.stdout);
  t.regex(refused.stderr, /not taken back automatically from dead router 'rb'.*--force/s);
  const forced = await move('--force');
  t.is(forced.code, 0, forced.stderr + forced.stdout);
  t.regex(forced.stdout, /^Moved: vDisk \/disk is served by router 'ra' \(the vPool's owner\) again, taken back from dead router 'rb' \(forced\)/m);
  t.is(logEntries(a.log, /^TAKEBACK FORCED by `vpoolfs move --force`: vDisk \/disk from dead router 'rb'/).length, 1);
  // what rb had not shipped is lost, as said: /disk reads what the backend had (zeros), and is ra's to write
  t.is((await ok(t, `head -c 16384 ${q(a.p('disk'))} | tr -d '\\0' | wc -c`)).trim(), '0');
  await ok(t, `dd if=/dev/urandom of=${q(a.p('disk'))} bs=4096 count=4 conv=notrunc,fsync status=none`);
  t.deepEqual((await c.routers()).find((r) => r.name === 'ra')?.vdisks.map((v) => v.path), ['/disk']);
  explain(t, { ra: a, rb: b });
});

/** The unsafe dead delegate: rb killed with 4 unshipped writes and no DTL; ra refuses to take /disk back. */
async function deadUnsafeDelegate(t: ExecutionContext, c: Cluster): Promise<{ a: MountHandle; b: MountHandle }> {
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 16M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', [], { scoMaxAgeMs: 600_000 }));
  await moveTo(t, c, a.p('disk'), 'rb');
  await ok(t, `dd if=/dev/urandom of=${q(b.p('disk'))} bs=4096 count=4 conv=notrunc status=none`);
  await until('rb records /disk unshipped without a DTL', async () => {
    const d = (await c.routers()).find((r) => r.name === 'rb')?.vdisks.find((v) => v.path === '/disk') as { dtl?: { mode: string; dirty: boolean } } | undefined;
    return d?.dtl?.mode === 'none' && d.dtl.dirty;
  });
  await b.kill9();
  await until('ra refuses to take /disk back from the dead rb', () => logEntries(a.log, REFUSED).length > 0);
  return { a, b };
}

const REFUSED = /^vDisk \/disk stays unavailable: vDisk \/disk is not taken back automatically from dead router 'rb' \(owner tag \d+\): its writes not yet in the backend may be lost \(DTL none, ok_standalone, unshipped since /;

/** The refusal as the owner `m` (router `name`) answers it: EBUSY on /disk, the log, `move` without --force. */
async function refusesLikeBefore(t: ExecutionContext, c: Cluster, m: MountHandle, name: string): Promise<void> {
  await until(`${name} refuses to take /disk back from the dead rb`, () => logEntries(m.log, REFUSED).length > 0);
  t.is(logEntries(m.log, /^TAKEBACK: vDisk \/disk/).length, 0, `${name} did not take /disk back`);
  const r = await sh(`dd if=${q(m.p('disk'))} of=/dev/null bs=4096 count=1 status=none`);
  t.not(r.code, 0, `a read of /disk through ${name} fails`);
  t.regex(r.stderr, /busy/i, r.stderr);
  const refused = await sh(`node ${q(CLI)} move ${q(m.p('disk'))} --to ${name} --registry ${q(c.etcd.url)}`);
  t.is(refused.code, 1, refused.stdout);
  t.regex(refused.stderr, /not taken back automatically from dead router 'rb'.*--force/s);
  t.deepEqual((await c.routers()).find((r) => r.name === 'rb')?.vdisks.map((v) => v.path), ['/disk'], 'the record stays the dead rb\'s');
}

test.serial('a clean stop of the owner with a dead unsafe delegate keeps its record: the owner started again, and another router after it, meet the same refusal and --force', async (t) => {
  const c = await cluster(t);
  const { a, b } = await deadUnsafeDelegate(t, c);
  t.is(await a.stop(), 0, a.log.slice(-3000));
  t.is(logEntries(a.log, /^released vPool 'pool' keeping the records of 1 delegated vDisk\(s\) not taken back/).length, 1, a.log.slice(-3000));
  t.deepEqual((await c.routers()).find((r) => r.name === 'rb')?.vdisks.map((v) => v.path), ['/disk'], 'the release kept the dead rb\'s record');

  // the same router again: the same refusal, not /disk opened from the backend without a record or a fence
  const a2 = await startMount(t, c.router('ra'));
  await refusesLikeBefore(t, c, a2, 'ra');
  t.is(await a2.stop(), 0, a2.log.slice(-3000));

  // another router (a fresh state directory) owning the vPool next: the same, and its --force takes /disk back
  const rc = await startMount(t, c.router('rc'));
  await refusesLikeBefore(t, c, rc, 'rc');
  const forced = await sh(`node ${q(CLI)} move ${q(rc.p('disk'))} --to rc --registry ${q(c.etcd.url)} --force`);
  t.is(forced.code, 0, forced.stderr + forced.stdout);
  t.is(logEntries(rc.log, /^TAKEBACK FORCED by `vpoolfs move --force`: vDisk \/disk from dead router 'rb'/).length, 1);
  // rb's 4 unshipped writes are lost, as said: /disk reads what the backend had (zeros), and is rc's to write
  t.is((await ok(t, `head -c 16384 ${q(rc.p('disk'))} | tr -d '\\0' | wc -c`)).trim(), '0');
  await ok(t, `dd if=/dev/urandom of=${q(rc.p('disk'))} bs=4096 count=4 conv=notrunc,fsync status=none`);
  t.deepEqual((await c.routers()).find((r) => r.name === 'rc')?.vdisks.map((v) => v.path), ['/disk']);
  explain(t, { ra: a, ra2: a2, rb: b, rc });
});

test.serial('a takeback from a dead delegate while the backend refuses: tried again (BUSY meanwhile, never EIO), served once the backend is back, every acknowledged write, without a restart', async (t) => {
  // the backend through a symlink: pointed at itself (ELOOP) every call of every router fails; back, it serves
  // again — each switch one rename(2), so no call ever sees a half-made state
  const c = await cluster(t, (root) => {
    mkdirSync(path.join(root, 'backend-dir'));
    symlinkSync('backend-dir', path.join(root, 'backend'));
    return `file://${path.join(root, 'backend')}`;
  });
  const link = path.join(c.root, 'backend');
  const point = (to: string) => ok(t, `ln -sfn ${q(to)} ${q(`${link}.new`)} && mv -Tf ${q(`${link}.new`)} ${q(link)}`);
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  // held calls answer EIO after peerWaitMs: the takeback answers BUSY once it has been failing for half of it
  const a = await startMount(t, c.router('ra', dtl, { peerWaitMs: 4000 }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', dtl));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 0);
  await wb.waitFor(300 + Math.floor(Math.random() * 300));
  await until('rb records /disk under a sync DTL', async () => {
    const d = (await c.routers()).find((r) => r.name === 'rb')?.vdisks.find((v) => v.path === '/disk') as { dtl?: { mode: string } } | undefined;
    return d?.dtl?.mode === 'sync';
  });

  await point('backend'); // down
  await b.kill9();
  await wb.stop();
  t.log(`${wb.acked.length} writes acknowledged by rb before its kill -9`);
  const FAILED = /^TAKEBACK: vDisk \/disk is this router's again \(owner tag \d+, returned from dead router 'rb'\) but could not be opened here \(try (\d+)\): .*ELOOP/;
  await until('ra fails to open /disk 3 times, its calls answering BUSY', () => logEntries(a.log, FAILED).length >= 3 && logEntries(a.log, /its calls answer BUSY meanwhile$/).length > 0);
  const r = await sh(`dd if=${q(a.p('disk'))} of=/dev/null bs=4096 count=1 status=none`);
  t.not(r.code, 0, 'a read of /disk through ra fails while its takeback fails');
  t.regex(r.stderr, /busy/i, r.stderr);
  t.deepEqual((await c.routers()).find((r) => r.name === 'ra')?.vdisks.map((v) => v.path), ['/disk'], 'the record is ra\'s (kept while the open fails)');

  await point('backend-dir'); // back
  await until('ra takes /disk back once the backend answers', () => logEntries(a.log, /^TAKEBACK: vDisk \/disk taken back from dead router 'rb': served here/).length === 1);
  t.log(logEntries(a.log, /^TAKEBACK: vDisk \/disk opened here at try/).map((e) => e.message).join('\n'));
  t.is(logEntries(a.log, /^EIO: calls on \/disk/).length, 0, 'no call on /disk answered EIO');
  await allThere(t, wb, [a]);
  t.is(await a.stop(), 0);
  const rc = await startMount(t, c.router('rc', dtl));
  await allThere(t, wb, [rc]);
  explain(t, { ra: a, rb: b, rc });
});
