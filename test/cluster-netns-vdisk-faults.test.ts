/**
 * Ownership per vDisk under faults, through real mounts of three routers each in its own network namespace
 * (helpers/three-routers.ts: etcd and a file:// backend on the bridge, a DTL server per router, `--dtl sync`; ra
 * the vPool's owner in rack1, rb a follower in rack1, rc a follower in rack2). `/vms/disk` is delegated to rb by
 * `vpoolfs move … --to rb` (docs/cluster.md, "Ownership per vDisk"), and a writer writes it through rb's mount.
 *
 * - kill -9 of the owner ra, no restart: rb or rc takes the vPool over. If rc takes it, its start finds /vms/disk
 *   delegated to the live rb and leaves it there (`stays served by router 'rb'`); if rb takes it, it closes the
 *   delegated vDisk and takes it back fenced. Either way rb's writer goes on without an error, every acknowledged
 *   write reads back through rb's and rc's mounts, after a move back to the new owner, and on a fourth router
 *   rebuilding the vPool from the backend.
 * - SIGSTOP of the delegate rb (a zombie) under its writer, its DTL in sync: once rb's registry lease is gone ra
 *   takes /vms/disk back by itself (rebuild from the backend, the `t<tag>` fence, the DTL recovery) with every
 *   write rb acknowledged; ra and rc write it (a reference copy is taken); SIGCONT rb: rb logs FENCED, its mount
 *   answers /vms/disk with an error, and what ra serves stays the reference — through ra, rc, and a fourth
 *   router rebuilding from the backend once rb's late uploads had time to land.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { threeRouters, waitTakeover } from './helpers/three-routers.js';
import { badBlocks, startWriter, type Writer } from './helpers/dtl-mount.js';
import { until } from './helpers/until.js';
import { explainLogs, moveVDisk } from './helpers/vdisk-move-cli.js';

const test = fuseTest();
const bridge = useBridge();

/** Every acknowledged block of `w` through each of `mounts`. */
async function allThere(t: ExecutionContext, w: Writer | number[], mounts: MountHandle[]): Promise<void> {
  const acked = Array.isArray(w) ? w : w.acked;
  for (const m of mounts) {
    const bad = await badBlocks(t, m.p('vms', 'disk'), acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
}

test.serial('kill -9 of the vPool\'s owner while its vDisk is delegated to rb, no restart: the new owner leaves it to rb (or rb takes it back fenced); rb\'s writer sees no error, every byte', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  await moveVDisk(t, r.nc.c, a.p('vms', 'disk'), 'rb');
  const wb = startWriter(b.p('vms', 'disk'), 0, 64);
  t.teardown(() => wb.stop());
  await wb.waitFor(200 + Math.floor(Math.random() * 300));

  await a.kill9();
  const { taker, other, tn } = await waitTakeover(t, r, 'kill -9');
  t.log(`${tn} took the vPool over; ${wb.acked.length} writes acknowledged by rb so far`);
  if (tn === 'rc') {
    // rc's start found /vms/disk delegated to the live rb: routed there, not opened
    await until('rc adopts /vms/disk as rb\'s', () => logEntries(c.log, /^vDisk \/vms\/disk stays served by router 'rb'/).length === 1);
    t.is(logEntries(c.log, /^TAKEBACK/).length, 0, c.log.slice(-3000));
  } else {
    await until('rb takes /vms/disk back as the new owner', () => logEntries(b.log, /^TAKEBACK: vDisk \/vms\/disk taken back from router 'rb' \(this router/).length === 1);
  }
  await wb.waitFor(wb.acked.length + 300);
  t.is(wb.stderr, '', 'rb\'s writer saw no error');
  await allThere(t, wb.acked.slice(), [b, c]);
  if (tn === 'rc') {
    // the new owner takes it back from the live delegate under the writer
    await moveVDisk(t, r.nc.c, c.p('vms', 'disk'), 'rc');
    await wb.waitFor(wb.acked.length + 300);
  }
  await wb.stop();
  t.is(wb.stderr, '', 'rb\'s writer saw no error');
  await allThere(t, wb, [b, c]);

  t.is(await other.stop(), 0);
  t.is(await taker.stop(), 0);
  const d = await startMount(t, r.nc.c.router('rd'));
  await allThere(t, wb, [d]);
  t.is(await d.stop(), 0);
  explainLogs(t, { ra: a, rb: b, rc: c, rd: d });
});

test.serial('SIGSTOP of the delegate under its writer (sync DTL): the owner takes its vDisk back with every acknowledged write; SIGCONT: the zombie is fenced, its mount answers an error, its late uploads change nothing', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  t.teardown(() => { if (b.alive) process.kill(b.pid, 'SIGCONT'); });
  await moveVDisk(t, r.nc.c, a.p('vms', 'disk'), 'rb');
  const wb = startWriter(b.p('vms', 'disk'), 0, 0);
  t.teardown(() => wb.stop());
  await until('rb records /vms/disk under a sync DTL', async () => {
    const d = (await r.nc.c.routers()).find((x) => x.name === 'rb')?.vdisks.find((v) => v.path === '/vms/disk') as { dtl?: { mode: string } } | undefined;
    return d?.dtl?.mode === 'sync';
  });
  await wb.waitFor(300 + Math.floor(Math.random() * 300));

  process.kill(b.pid, 'SIGSTOP');
  const ackedAtStop = wb.acked.slice();
  t.log(`SIGSTOP of rb after ${ackedAtStop.length} acknowledged writes`);
  await until('ra takes /vms/disk back from the stopped rb', () => logEntries(a.log, /^TAKEBACK: vDisk \/vms\/disk taken back from dead router 'rb'/).length === 1, 90_000);
  await allThere(t, ackedAtStop, [a, c]);

  // the owner (and rc through it) writes over blocks rb wrote; the reference is what ra serves then
  await ok(t, `head -c 2M /dev/urandom | dd of=${q(a.p('vms', 'disk'))} bs=64k conv=notrunc,fsync status=none`);
  await ok(t, `head -c 2M /dev/urandom | dd of=${q(c.p('vms', 'disk'))} bs=64k seek=1024 conv=notrunc,fsync status=none`);
  const ref = path.join(r.nc.c.root, 'reference');
  await ok(t, `cp ${q(a.p('vms', 'disk'))} ${q(ref)}`);

  process.kill(b.pid, 'SIGCONT');
  await until('rb is fenced for /vms/disk', () => logEntries(b.log, /^FENCED: this router lost vDisk/).length > 0, 60_000);
  t.log(String(logEntries(b.log, /^FENCED: this router lost vDisk/)[0]!.message));
  const late = await sh(`dd if=${q(b.p('vms', 'disk'))} of=/dev/null bs=4096 count=1 iflag=direct status=none`);
  t.not(late.code, 0, 'a read of /vms/disk through the zombie rb fails');
  t.log(`rb's mount: ${late.stderr.trim()}`);
  await sleep(1000); // rb's late uploads, if any, land
  await wb.stop();
  t.log(`rb's writer: ${wb.acked.length - ackedAtStop.length} writes acknowledged after SIGCONT; ${wb.stderr.trim() || 'no error'}`);
  for (const m of [a, c]) t.is((await sh(`cmp ${q(m.p('vms', 'disk'))} ${q(ref)}`)).code, 0, `what ${m.mountpoint} serves changed after rb resumed`);

  t.is(await c.stop(), 0);
  t.is(await a.stop(), 0);
  await b.kill9();
  const d = await startMount(t, r.nc.c.router('rd'));
  t.is((await sh(`cmp ${q(d.p('vms', 'disk'))} ${q(ref)}`)).code, 0, 'a router rebuilding from the backend reads the reference');
  t.is(await d.stop(), 0);
  explainLogs(t, { ra: a, rb: b, rc: c, rd: d });
});
