/**
 * The takeover rule (docs/cluster.md, "Takeover: when it is automatic"), real etcd, daemons and mounts:
 * owner A (no DTL, uploads held back by a long SCO age) has unshipped writes in /disk and nothing unshipped in
 * /other; follower B; kill -9 A. B does NOT take the vPool over (A's record says /disk could lose writes):
 * its log and `router list` say why; its calls answer EIO after its bounded wait. `vpoolfs takeover` without
 * --force prints the risk, exits 1 and changes nothing; with --force B takes over in place, and what the
 * message said may be lost (/disk's unshipped megabyte) is what is lost, while what was shipped is there.
 * And a standby and a follower waiting for one dead owner: both shown waiting; `takeover --router rs --force`
 * makes the standby take it (it mounts), the follower follows it.
 * And the DTL reconfigured: the owner's DTL server killed under a writer, its vDisk goes on in sync on the
 * DTL server another router registered, and the takeover after kill -9 of the owner is automatic and complete.
 * (The automatic case, a sync DTL in sync, is test/follower-takeover.test.ts and test/registry-standby.test.ts.)
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, fuseTest, logEntries, MountHandle, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { badBlocks, startWriter, waitDtl } from './helpers/dtl-mount.js';

const test = fuseTest();

interface Row {
  name: string;
  state: string;
  role: string | null;
  vpools: Array<{ vpool: string; tag: number }>;
  vdisks: Array<{ path: string | null; dtl: { mode: string; state: string; dirty: boolean } | null }>;
  waiting: { owner: string; tag: number; risks: Array<{ path: string | null; dtl: { mode: string; dirty: boolean } | null; why: string }> } | null;
}

test('a dead owner with unshipped writes and no DTL: no automatic takeover; vpoolfs takeover prints the risk, and with --force the follower takes over losing exactly that', async (t) => {
  const c = await cluster(t);
  const rows = async (): Promise<Row[]> => (await c.routers()) as unknown as Row[];
  const takeover = (args: string) => sh(`node ${q(CLI)} takeover --registry ${q(c.etcd.url)} ${args}`);
  // nothing ships until the clean stop: SCOs of 16 MiB, 10 minutes old at most
  const hold = { scoMaxAgeMs: 600_000, scoClusters: 4096, tlogScos: 64 };
  const p1 = path.join(c.root, 'p1');
  const p2 = path.join(c.root, 'p2');
  writeFileSync(p1, (await sh('head -c 1M /dev/urandom | base64 -w0')).stdout.slice(0, 1 << 20));
  writeFileSync(p2, (await sh('head -c 1M /dev/urandom | base64 -w0')).stdout.slice(0, 1 << 20));
  const sha = async (cmd: string): Promise<string> => (await ok(t, `${cmd} | sha256sum`)).split(' ')[0];

  // shipped: /disk's first MiB and /other (a clean stop ships everything)
  let a = await startMount(t, c.router('ra', [], hold));
  await ok(t, `truncate -s 4M ${q(a.p('disk'))} && dd if=${q(p1)} of=${q(a.p('disk'))} bs=1M conv=notrunc,fsync status=none`);
  await ok(t, `head -c 256K /dev/urandom > ${q(a.p('other'))}`);
  const other = await sha(`cat ${q(a.p('other'))}`);
  t.is(await a.stop(), 0);
  // unshipped: /disk's second MiB, acknowledged (fsync) on A only
  a = await startMount(t, c.router('ra', [], hold));
  await ok(t, `dd if=${q(p2)} of=${q(a.p('disk'))} bs=1M seek=1 conv=notrunc,fsync status=none`);
  const b = await startMount(t, c.router('rb', [], { peerWaitMs: 1000 }));
  t.is(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, b.log);

  // A's records: /disk unshipped with no DTL (not safe), /other clean
  let ra: Row | undefined;
  while ((ra = (await rows()).find((r) => r.name === 'ra'))?.vdisks.find((d) => d.path === '/disk')?.dtl?.dirty !== true) await sleep(100);
  t.like(ra!.vdisks.find((d) => d.path === '/disk')?.dtl, { mode: 'none', state: 'ok_standalone', dirty: true });
  t.like(ra!.vdisks.find((d) => d.path === '/other')?.dtl, { mode: 'none', dirty: false });
  const tag = ra!.vpools[0].tag;
  // the owner is alive: refused, nothing changes
  const alive = await takeover('--vpool pool --force');
  t.is(alive.code, 1, alive.stdout);
  t.regex(alive.stderr, /owned by router 'ra' \(owner tag \d+\), which is alive/);

  await a.kill9();
  // B notices the death and does not take over: its log and router list say which vDisk could lose what
  let rb: Row | undefined;
  while ((rb = (await rows()).find((r) => r.name === 'rb'))?.waiting == null) {
    if (!b.alive) throw new Error(`rb exited:\n${b.log}`);
    if (logEntries(b.log, /^TAKEOVER/).length > 0) throw new Error(`rb took the vPool over by itself, losing /disk's unshipped writes:\n${b.log}`);
    await sleep(100);
  }
  t.like(rb!.waiting, { owner: 'ra', tag });
  t.deepEqual(rb!.waiting!.risks.map((r) => [r.path, r.dtl?.mode, r.dtl?.dirty]), [['/disk', 'none', true]]);
  t.is(logEntries(b.log, /^NOT TAKING OVER: vPool 'pool' is not taken over automatically from router 'ra'.*\/disk \(vDisk/).length, 1, b.log);
  t.is(logEntries(b.log, /^TAKEOVER/).length, 0);
  const table = await c.routerTable();
  t.regex(table, /rb: WAITING since \S+ to take vPool 'pool' over from dead router 'ra'/);
  t.regex(table, /\/disk \(vDisk [^)]+\): writes not yet in the backend since \S+, DTL none, ok_standalone: they are lost/);
  // its forwarded calls answer EIO after the bounded wait (peerWaitMs 1 s)
  const read = await sh(`cat ${q(b.p('other'))} > /dev/null`);
  t.not(read.code, 0);
  t.regex(read.stderr, /Input\/output error/);

  // errors: unknown vPool, a router that is not waiting
  const unknown = await takeover('--vpool nope');
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /vPool 'nope' has no owner in the registry/);
  const notWaiting = await takeover('--vpool pool --router rz --force');
  t.is(notWaiting.code, 1);
  t.regex(notWaiting.stderr, /router 'rz' is not waiting to take vPool 'pool' over/);

  // without --force: the risk, exit 1, nothing changes
  const dry = await takeover('--vpool pool');
  t.is(dry.code, 1, dry.stderr);
  t.regex(dry.stdout, /A takeover may lose writes of 1 vDisk\(s\)/);
  t.regex(dry.stdout, /^ {2}\/disk \(vDisk [^)]+\): writes not yet in the backend since \S+, DTL none, ok_standalone: they are lost$/m);
  t.notRegex(dry.stdout, /\/other/);
  t.regex(dry.stdout, /Waiting to take it over: 'rb' \(follower\)/);
  t.regex(dry.stdout, /Not taken over: run again with --force/);
  const after = await rows();
  t.like(after.find((r) => r.name === 'ra'), { state: 'expired', vpools: [{ vpool: 'pool', tag }] });
  t.like(after.find((r) => r.name === 'rb'), { state: 'alive', role: 'follower', vpools: [] });

  // --force: B takes over in place
  const forced = await takeover('--vpool pool --force');
  t.is(forced.code, 0, forced.stderr);
  t.regex(forced.stdout, /Taken over: router 'rb' owns vPool 'pool' now \(owner tag \d+\)/);
  while (logEntries(b.log, /^took vPool 'pool' over from router 'ra'/).length === 0) {
    if (!b.alive) t.fail(`rb exited:\n${b.log}`);
    await sleep(100);
  }
  t.is(logEntries(b.log, /^TAKEOVER FORCED by `vpoolfs takeover`: vPool 'pool' from router 'ra' may lose writes/).length, 1, b.log);
  const final = await rows();
  t.like(final.find((r) => r.name === 'rb'), { role: 'owner', waiting: null });
  // what the message said may be lost is what is lost: /disk's unshipped second MiB; the shipped data is there
  t.is(await sha(`head -c 1M ${q(b.p('disk'))}`), await sha(`cat ${q(p1)}`), 'the shipped first MiB');
  t.is(await sha(`dd if=${q(b.p('disk'))} bs=1M skip=1 count=1 status=none`), await sha('head -c 1M /dev/zero'), 'the unshipped second MiB is lost, as said');
  t.not(await sha(`cat ${q(p2)}`), await sha('head -c 1M /dev/zero'));
  t.is(await sha(`cat ${q(b.p('other'))}`), other, '/other, recorded clean, is whole');
  t.is(await b.stop(), 0);
});

test('a standby and a follower wait for the same dead owner; vpoolfs takeover --router picks the standby, which mounts, and the follower follows it', async (t) => {
  const c = await cluster(t);
  const rows = async (): Promise<Row[]> => (await c.routers()) as unknown as Row[];
  const hold = { scoMaxAgeMs: 600_000, scoClusters: 4096, tlogScos: 64 };
  const a = await startMount(t, c.router('ra', [], hold));
  await ok(t, `truncate -s 4M ${q(a.p('disk'))} && head -c 64K /dev/urandom | dd of=${q(a.p('disk'))} bs=64k conv=notrunc,fsync status=none`);
  const b = await startMount(t, c.router('rb'));
  const s = new MountHandle({ ...c.router('rs', ['--standby']), readyMs: 120_000 });
  t.teardown(() => s.stop(30_000).then(() => undefined));
  while (logEntries(s.log, /^standing by: vPool 'pool' is owned by router 'ra'/).length === 0) {
    if (!s.alive) throw new Error(`the standby exited:\n${s.log}`);
    await sleep(100);
  }
  while ((await rows()).find((r) => r.name === 'ra')?.vdisks.find((d) => d.path === '/disk')?.dtl?.dirty !== true) await sleep(100);

  await a.kill9();
  let waiting: Row[] = [];
  while ((waiting = (await rows()).filter((r) => r.waiting !== null)).length < 2) {
    for (const m of [b, s]) if (!m.alive) throw new Error(`${m.mountpoint}: exited:\n${m.log}`);
    if (logEntries(b.log, /^TAKEOVER/).length + logEntries(s.log, /^standby over/).length > 0) throw new Error('a router took the vPool over by itself');
    await sleep(100);
  }
  t.deepEqual(waiting.map((r) => [r.name, r.role, r.waiting?.owner, r.waiting?.risks.map((k) => k.path)]), [['rb', 'follower', 'ra', ['/disk']], ['rs', 'standby', 'ra', ['/disk']]]);
  t.is(logEntries(s.log, /^NOT TAKING OVER: vPool 'pool' is not taken over automatically from router 'ra'/).length, 1, s.log);

  const r = await sh(`node ${q(CLI)} takeover --registry ${q(c.etcd.url)} --vpool pool --router rs --force`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Waiting to take it over: 'rs' \(standby\)\.\n/);
  t.regex(r.stdout, /Taken over: router 'rs' owns vPool 'pool' now/);
  await s.waitReady();
  t.is(logEntries(s.log, /^standby over: took vPool 'pool' after \d+ ms$/).length, 1, s.log);
  while (logEntries(b.log, /^following router 'rs'/).length === 0) {
    if (!b.alive) throw new Error(`rb exited:\n${b.log}`);
    await sleep(100);
  }
  t.is(logEntries(b.log, /^TAKEOVER/).length, 0, 'rb, not named, did not take it');
  const after = await rows();
  t.deepEqual(after.map((x) => [x.name, x.state, x.role, x.waiting]), [['ra', 'expired', 'owner', null], ['rb', 'alive', 'follower', null], ['rs', 'alive', 'owner', null]]);
  // the vDisk is served again, through the new owner and its follower, alike (what ra had not shipped — its
  // resize and 64 KiB — is lost, as said)
  const shas = [];
  for (const m of [s, b]) shas.push(await ok(t, `sha256sum < ${q(m.p('disk'))}`));
  t.is(shas[0], shas[1]);
  t.is(await b.stop(), 0);
  t.is(await s.stop(), 0);
});

test('the DTL server of the owner dies: its vDisk moves to a DTL server another router registered, is in sync there again, and the takeover after kill -9 is automatic with every acknowledged write', async (t) => {
  const c = await cluster(t);
  const rows = async (): Promise<Row[]> => (await c.routers()) as unknown as Row[];
  const srv1 = await startDtlServer(t, path.join(c.root, 'dtl1'));
  const srv2 = await startDtlServer(t, path.join(c.root, 'dtl2'));
  const a = await startMount(t, c.router('ra', ['--dtl', 'sync', '--dtl-server', srv1.address], { dtlRetryMs: 300 }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync' && d.server === srv1.address, 'ok_sync on the first server');
  // rb, a follower, registers the DTL server it sends to: ra adds it to its list
  const b = await startMount(t, c.router('rb', ['--dtl', 'sync', '--dtl-server', srv2.address], { dtlRetryMs: 300 }));
  while (logEntries(a.log, /^DTL servers of this router, in the order they are tried/).length === 0) await sleep(100);
  t.regex(String(logEntries(a.log, /^DTL servers of this router, in the order they are tried/)[0].message), new RegExp(`${srv2.address.replace(/\./g, '\\.')} \\(registered by router 'rb'`));

  const w = startWriter(a.p('disk'), 0, 64);
  await w.waitFor(100 + Math.floor(Math.random() * 200));
  await srv1.kill9();
  await waitDtl(a.p('disk'), (d) => d.state === 'ok_sync' && d.server === srv2.address, 'ok_sync on the registered server');
  await w.waitFor(w.acked.length + 100);
  // the owner's record says in sync again (it may never have recorded the short degraded spell)
  while ((await rows()).find((r) => r.name === 'ra')?.vdisks.find((d) => d.path === '/disk')?.dtl?.state !== 'ok_sync') await sleep(100);
  await a.kill9();
  await w.done;
  const acked = [...w.acked];
  while (logEntries(b.log, /^took vPool 'pool' over from router 'ra'/).length === 0) {
    if (!b.alive) throw new Error(`rb exited:\n${b.log}`);
    if (logEntries(b.log, /^NOT TAKING OVER/).length > 0) throw new Error(`rb refused an in-sync takeover:\n${b.log}`);
    await sleep(100);
  }
  const bad = await badBlocks(t, b.p('disk'), acked);
  t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing after the takeover`);
  t.is(await b.stop(), 0);
});
