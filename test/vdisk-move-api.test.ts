/**
 * The management API and the snapshot schedule on a delegated vDisk, through real daemons, mounts and etcd
 * (docs/cluster.md, "Ownership per vDisk"): ra the vPool's owner, rb and rc its followers, `/disk` moved to rb.
 * The CLI's verbs (`vpoolfs snapshot create|list|sticky|delete`, `rollback`, `clone`, `info`) on the owner's mount
 * (the CLI finds the API of the mount a path is on, tools/client/locate.ts: a follower's mount answers with the
 * owner's, whose mountpoint it is not under — not usable from there) go to the owner's API, which forwards them to rb
 * (tools/daemon/delegate-calls.ts): rb takes the snapshots (its log), the answers are its own, a rollback gives the
 * snapshot's bytes through every mount, a clone is refused with rb's "move it back first", a bad name gets the
 * API's sentence. Then the owner's automatic snapshots every second are taken by rb, its scrub skips the vDisk
 * (said once); the schedule's retention runs through rb's delegate link with a clock 40 days ahead.
 */
import { open, readFile, stat } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import { CLI, fuseTest, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { explain, moveTo } from './helpers/vdisk-move.js';
import { LinkClient } from '../router-link/client.js';
import { DelegateForwarder } from '../tools/daemon/delegate-calls.js';
import { DAY_MS, SnapshotScheduler } from '../volume/snapshots/snapshot-schedule.js';
import type { SnapshotView } from '../api/views.js';
import type { VPool } from '../volume/types.js';

const test = fuseTest();
const SIZE = 4 * 2 ** 20;
const OFF = { snapshot: null, retention: null, scrub: null };

async function put(m: MountHandle, byte: number): Promise<Buffer> {
  const data = Buffer.alloc(256 * 1024, byte);
  const fh = await open(m.p('disk'), 'r+');
  try {
    await fh.write(data, 0, data.length, 512 * 1024);
  } finally {
    await fh.close();
  }
  return data;
}

/** Every byte of the vDisk through each mount: `byte` over [512 KiB, 768 KiB), zeros elsewhere. */
async function allShow(t: ExecutionContext, mounts: MountHandle[], byte: number, what: string): Promise<void> {
  const want = Buffer.alloc(SIZE);
  want.fill(byte, 512 * 1024, 768 * 1024);
  for (const m of mounts) {
    await until(`${what}: the size through ${m.mountpoint}`, async () => (await stat(m.p('disk'))).size === SIZE);
    t.true((await readFile(m.p('disk'))).equals(want), `${what}: every byte through ${m.mountpoint}`);
  }
}

const cli = (args: string) => sh(`node ${q(CLI)} ${args}`);

test.serial('the CLI\'s snapshot verbs on a delegated vDisk: answered by the router serving it, every byte through every mount', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra', [], { schedule: OFF }));
  await ok(t, `truncate -s ${SIZE} ${q(a.p('disk'))}`);
  const [b, cc] = await Promise.all([startMount(t, c.router('rb', [], { schedule: OFF })), startMount(t, c.router('rc', [], { schedule: OFF }))]);
  const all = [a, b, cc];
  await moveTo(t, c, a.p('disk'), 'rb');

  await put(a, 0x11);
  // create: taken by rb
  const r1 = await cli(`snapshot create ${q(a.p('disk'))} s1`);
  t.is(r1.code, 0, r1.stderr);
  t.regex(r1.stdout, /snapshot s1 of .* taken/);
  t.is(logEntries(b.log, 'snapshot taken', { path: '/disk', name: 's1' }).length, 1, 'rb took s1');
  t.is(logEntries(a.log, 'snapshot taken', { path: '/disk', name: 's1' }).length, 0, 'ra did not');
  await put(cc, 0x22);
  // the CLI on a follower's path (rc: the owner answers user.vpool.api there; the path within the vPool is the same)
  const r2 = await cli(`snapshot create ${q(cc.p('disk'))} s2 --sticky`);
  t.is(r2.code, 0, r2.stderr);
  // the list, from rb; the same as its xattr view through each router's mount
  const r = await cli(`snapshot list ${q(a.p('disk'))} --json`);
  t.is(r.code, 0, r.stderr);
  t.deepEqual((JSON.parse(r.stdout) as SnapshotView[]).map((s) => [s.name, s.sticky]), [['s1', false], ['s2', true]]);
  const rows = (v: string) => (JSON.parse(v) as SnapshotView[]).map((s) => [s.name, s.uuid, s.sticky, s.timestamp]);
  for (const m of all) t.deepEqual(rows(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(m.p('disk'))}`)), rows(r.stdout), `the list through ${m.mountpoint}`);
  t.regex((await cli(`snapshot list ${q(a.p('disk'))}`)).stdout, /^s2 .* sticky/m);
  // sticky on and off, delete
  t.is((await cli(`snapshot sticky ${q(a.p('disk'))} s1`)).code, 0);
  // and on the delegate's own mount
  t.is((await cli(`snapshot sticky ${q(b.p('disk'))} s2 --off`)).code, 0);
  t.is((await cli(`snapshot create ${q(a.p('disk'))} s3`)).code, 0);
  const del = await cli(`snapshot delete ${q(a.p('disk'))} s3`);
  t.is(del.code, 0, del.stderr);
  t.regex(del.stdout, /snapshot s3 of .* deleted/);
  const listed = JSON.parse((await cli(`snapshot list ${q(a.p('disk'))} --json`)).stdout) as SnapshotView[];
  t.deepEqual(listed.map((s) => [s.name, s.sticky]), [['s1', true], ['s2', false]]);
  // the vDisk's view: rb's data, the owner's tree attributes
  const info = JSON.parse((await cli(`info ${q(a.p('disk'))} --json`)).stdout) as { router: string; size: number; snapshots: SnapshotView[]; mode: number };
  t.like(info, { router: 'rb', size: SIZE, mode: 0o644 });
  t.deepEqual(info.snapshots.map((s) => s.name), ['s1', 's2']);
  // listings with it (ls, du): its view from rb
  const ls = await cli(`ls ${q(a.p())} --json`);
  t.is(ls.code, 0, ls.stderr);
  t.like((JSON.parse(ls.stdout) as { entries: unknown[] }).entries[0], { name: 'disk', kind: 'vdisk', mode: 0o644, vdisk: { router: 'rb', size: SIZE } });
  const du = await cli(`du ${q(a.p())} --json`);
  t.is(du.code, 0, du.stderr);
  t.like(JSON.parse(du.stdout), { vdisks: [{ path: 'disk', size: SIZE, ownBytes: 256 * 1024 }] });

  // a bad name: the API's sentence, nothing changed
  const bad = await cli(`snapshot delete ${q(a.p('disk'))} nope`);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /delete snapshot "nope" of disk: disk has no snapshot named "nope" \(ENOENT\)/);
  const badRb = await cli(`rollback ${q(a.p('disk'))} nope`);
  t.is(badRb.code, 1);
  t.regex(badRb.stderr, /roll back disk to "nope": disk has no snapshot named "nope" \(ENOENT\)/);
  // what needs the tree: BUSY with rb's sentence
  const template = await cli(`template ${q(a.p('disk'))}`);
  t.is(template.code, 1);
  t.regex(template.stderr, /a template of \/disk: a template is a source of clones, made by the vPool's owner; .*move it back to the vPool's owner first .*\(EBUSY\)/);
  const clone = await cli(`clone ${q(a.p('disk'))} ${q(a.p('copy'))} --snapshot s1`);
  t.is(clone.code, 1);
  t.regex(clone.stderr, /a clone of \/disk: a clone is a new file in the vPool's tree, made by the vPool's owner; .*move it back to the vPool's owner first .*\(EBUSY\)/);
  t.is((await ok(t, `ls ${q(a.p())}`)).trim(), 'disk');

  // rollback through the owner's mount to s1: every byte through every mount is s1's
  await put(b, 0x33);
  await allShow(t, all, 0x33, 'before the rollback');
  const rb1 = await cli(`rollback ${q(a.p('disk'))} s1`);
  t.is(rb1.code, 0, rb1.stderr);
  t.regex(rb1.stdout, /rolled back to s1/);
  t.is(logEntries(b.log, 'rolled back', { path: '/disk', name: 's1' }).length, 1, 'rb rolled back');
  await allShow(t, all, 0x11, 'rolled back to s1');
  t.deepEqual((JSON.parse((await cli(`snapshot list ${q(a.p('disk'))} --json`)).stdout) as SnapshotView[]).map((s) => s.name), ['s1']);

  // back home: the snapshots and the data are the owner's again, and its own API answers
  await moveTo(t, c, a.p('disk'), 'ra');
  t.deepEqual((JSON.parse((await cli(`snapshot list ${q(a.p('disk'))} --json`)).stdout) as SnapshotView[]).map((s) => s.name), ['s1']);
  await allShow(t, all, 0x11, 'back on ra');
  explain(t, { ra: a, rb: b, rc: cc });
  t.is(await cc.stop(), 0);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});

test.serial('the owner\'s automatic snapshots of a delegated vDisk are taken by its router; its scrub waits; retention goes through it', async (t) => {
  const c = await cluster(t);
  // every second: automatic snapshots, retention (nothing old enough), the nightly scrub
  const every = { snapshot: '* * * * * *', retention: '* * * * * *', scrub: '* * * * * *' };
  const a = await startMount(t, c.router('ra', [], { schedule: every }));
  await ok(t, `truncate -s ${SIZE} ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', [], { schedule: OFF }));
  await moveTo(t, c, a.p('disk'), 'rb');
  const autos = () => logEntries(b.log, 'snapshot taken', { path: '/disk' }).filter((e) => String(e.name).startsWith('auto-'));
  const byRb = () => logEntries(a.log, /^automatic snapshot of delegated vDisk \/disk taken by router 'rb'$/).length;
  await until('ra says rb took an automatic snapshot of /disk', () => byRb() >= 1);
  // (one run may fail while the move holds the vDisk's calls: from the first one rb took, none)
  const since = a.log.length;
  await until('ra says rb took two more', () => byRb() >= 3);
  t.true(autos().length >= 3, 'rb\'s log has them');
  t.is(logEntries(a.log.slice(since), 'automatic snapshot failed').length, 0);
  await until('the scrub skipped /disk', () => logEntries(a.log, /^scheduled scrub skips vDisk \/disk: it is delegated to router 'rb'/).length > 0);
  await until('a second scrub run', () => logEntries(a.log, 'scheduled scrub done').length >= 2);
  t.is(logEntries(a.log, /^scheduled scrub skips vDisk \/disk/).length, 1, 'said once');
  t.is(logEntries(a.log, 'retention could not delete a snapshot').length, 0);
  const list = JSON.parse((await cli(`snapshot list ${q(a.p('disk'))} --json`)).stdout) as SnapshotView[];
  t.true(list.filter((s) => s.automatic).length >= 2, JSON.stringify(list));
  t.is((await cli(`snapshot sticky ${q(a.p('disk'))} ${list[0].name}`)).code, 0);

  // retention 40 days ahead through rb's delegate link: every automatic snapshot but the sticky one goes
  const address = String(logEntries(b.log, 'router link listening')[0].address);
  const link = await LinkClient.connect({ address, vpool: 'pool', router: 'test' });
  t.teardown(() => link.close());
  const caller = {
    delegated: new Map([['/disk', 'rb']]),
    callDelegate: async (p: string, op: string, args: unknown[]) => ({ router: 'rb', ...(await link.call(op, args)) }),
  };
  const tree = { readdir: (d: string) => (d === '/' ? ['disk'] : []), stat: () => ({ kind: 'file' }) } as unknown as VPool;
  const scheduler = new SnapshotScheduler(tree, () => Date.now() + 40 * DAY_MS, new DelegateForwarder(() => caller, 30_000));
  const r = await scheduler.applyRetention();
  t.is(r.failed, 0);
  t.true(r.deleted >= 1);
  const left = (JSON.parse((await cli(`snapshot list ${q(a.p('disk'))} --json`)).stdout) as SnapshotView[]).map((s) => s.name);
  t.true(left.includes(list[0].name), 'the sticky one stays');
  t.false(list.slice(1).some((s) => left.includes(s.name)), `every other one of ${JSON.stringify(list.map((s) => s.name))} is gone: ${JSON.stringify(left)}`);
  explain(t, { ra: a, rb: b });
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});
