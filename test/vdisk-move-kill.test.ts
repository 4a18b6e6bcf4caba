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
 * The takeback's failures (a clean stop with a dead unsafe delegate, a backend refusing the takeback):
 * test/vdisk-takeback.test.ts.
 */
import { CLI, fuseTest, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster, recordedSync } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { startWriter } from './helpers/dtl-mount.js';
import { allThereAndRebuilt, deadUnsafeDelegate, explain, moveTo, syncDtlOwner } from './helpers/vdisk-move.js';

const test = fuseTest();

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
  // and a rebuild from the backend: both stop cleanly (the owner first), a third router with a fresh state opens the vPool
  const rc = await allThereAndRebuilt(t, c, wb, owner === 'ra' ? [a2, b] : [b, a2]);
  explain(t, { ra: a, ra2: a2, rb: b, rc });
});

test.serial('kill -9 of the delegate with a sync DTL: the owner takes its vDisk back by itself, every acknowledged write is there', async (t) => {
  const c = await cluster(t);
  const { dtl, a } = await syncDtlOwner(t, c);
  const b = await startMount(t, c.router('rb', dtl));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 0);
  await wb.waitFor(300 + Math.floor(Math.random() * 300));
  // rb records its vDisk's protection as it changes (the owner judges the takeback from it)
  await recordedSync(c, 'rb', '/disk');
  await b.kill9();
  await wb.stop(); // its mount is gone: the writer ends with an error, what it acknowledged counts
  t.log(`${wb.acked.length} writes acknowledged by rb before its kill -9`);

  await until('ra takes /disk back from the dead rb', async () => logEntries(a.log, /^TAKEBACK: vDisk \/disk taken back from dead router 'rb'/).length === 1);
  const rows = await c.routers();
  t.is(rows.find((r) => r.name === 'ra')?.vdisks.find((v) => v.path === '/disk')?.tag !== undefined, true, 'the record is ra\'s again');
  const rc = await allThereAndRebuilt(t, c, wb, [a], dtl);
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
  const rc = await allThereAndRebuilt(t, c, wb, [b]);
  explain(t, { ra: a, rb: b, rc });
});

test.serial('kill -9 of the delegate with unshipped writes and no DTL: the owner does not take its vDisk back by itself, says what would be lost, the vDisk answers an error, not stale data; vpoolfs move --to <owner> --force takes it back', async (t) => {
  const c = await cluster(t);
  // rb ships an open SCO only after 10 minutes: its writes stay in its write cache (and no DTL has them)
  const { a, b } = await deadUnsafeDelegate(t, c);
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
