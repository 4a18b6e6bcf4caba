/**
 * The takeback's failures (docs/cluster.md, "Ownership per vDisk"), through real daemons, mounts, etcd and TCP, in
 * the style of test/vdisk-move-kill.test.ts:
 *
 * - the owner's clean stop with a dead delegate whose record is not safe (kill -9 with 4 unshipped writes, no DTL):
 *   its release keeps that record, so the owner started again — and another router after it — meets the same
 *   refusal (EBUSY, the log, `move` naming --force), and `move FILE --to <owner> --force` still takes it back.
 * - a takeback from a dead delegate (a sync DTL) while the backend refuses every call: the return holds in etcd,
 *   the open fails; it is tried again with a back-off (BUSY meanwhile, never EIO, the record kept) and served once
 *   the backend is back — every acknowledged write, through the owner and after a rebuild elsewhere, no restart.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { CLI, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { cluster, recordedSync, type Cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { startWriter } from './helpers/dtl-mount.js';
import { allThere, allThereAndRebuilt, deadUnsafeDelegate, explain, moveTo, REFUSED, syncDtlOwner } from './helpers/vdisk-move.js';

const test = fuseTest();


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
  // held calls answer EIO after peerWaitMs: the takeback answers BUSY once it has been failing for half of it
  const { dtl, a } = await syncDtlOwner(t, c, { peerWaitMs: 4000 });
  const b = await startMount(t, c.router('rb', dtl));
  await moveTo(t, c, a.p('disk'), 'rb');
  const wb = startWriter(b.p('disk'), 0, 0);
  await wb.waitFor(300 + Math.floor(Math.random() * 300));
  await recordedSync(c, 'rb', '/disk');

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
  const rc = await allThereAndRebuilt(t, c, wb, [a], dtl);
  explain(t, { ra: a, rb: b, rc });
});

test.serial('a takeback still failing when the whole vPool moves: the move keeps its record, the new owner takes it back from the backend and the DTL once they serve it, every acknowledged write', async (t) => {
  const c = await cluster(t);
  const { dtl, a } = await syncDtlOwner(t, c);
  const b = await startMount(t, c.router('rb', dtl));
  const d = await startMount(t, c.router('rd', dtl));
  await moveTo(t, c, a.p('disk'), 'rd');
  const wd = startWriter(d.p('disk'), 0, 0);
  await wd.waitFor(300 + Math.floor(Math.random() * 300));
  const id = await recordedSync(c, 'rd', '/disk');
  await d.kill9();
  await wd.stop();
  t.log(`${wd.acked.length} writes acknowledged by rd before its kill -9`);
  // only /disk's objects refuse (its directory in the backend a symlink to itself: ELOOP); rd is dead, and ra
  // takes /disk back only once rd's 2 s lease has expired, so nothing writes there meanwhile
  const dir = path.join(c.root, 'backend', 'vdisks', id);
  await ok(t, `mv ${q(dir)} ${q(`${dir}.away`)} && ln -s ${q(id)} ${q(dir)}`);
  const FAILED = /^TAKEBACK: vDisk \/disk is this router's again .* but could not be opened here \(try \d+\): .*ELOOP/;
  await until('ra fails to open /disk twice', () => logEntries(a.log, FAILED).length >= 2);

  const r = await sh(`node ${q(CLI)} move --vpool pool --to rb --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.is(logEntries(a.log, /^TAKEBACK: vDisk \/disk is still not open here at this stop/).length, 1, a.log.slice(-3000));
  await until('rb, the new owner, takes up the takeback ra had still to do', () => logEntries(b.log, /^vDisk \/disk is recorded as a takeback router 'ra' \(the vPool's former owner\) had still to do/).length === 1 && logEntries(b.log, FAILED).length >= 1);
  await ok(t, `rm ${q(dir)} && mv ${q(`${dir}.away`)} ${q(dir)}`);
  await until('rb takes /disk back once its objects serve', () => logEntries(b.log, /^TAKEBACK: vDisk \/disk taken back from router 'ra' \(the vPool's former owner, which could not open it\): served here/).length === 1);
  t.is(logEntries(b.log, /^EIO: calls on \/disk/).length + logEntries(a.log, /^EIO: calls on \/disk/).length, 0, 'no call on /disk answered EIO on rb or ra');
  await allThere(t, wd, [b, a]);
  explain(t, { ra: a, rb: b, rd: d });
});
