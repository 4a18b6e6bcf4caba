/**
 * Scrubbing through the CLI on a real mount (docs/scrubbing.md): `vpoolfs scrub FILE` frees backend space
 * and every byte of the vDisk and of a clone of its snapshot reads the same; `user.vdisk.info` shows the
 * scrub; `vpoolfs gc --dry-run` finds nothing left; on the vPool's root it lists an orphan vDisk namespace planted
 * in the backend (with the reason), and `vpoolfs gc` deletes it; `vpoolfs scrub --backend URL --scratch DIR` in another
 * process leaves a result that `vpoolfs scrub --apply FILE` applies in the daemon; the metrics count them;
 * after a restart of the daemon `vpoolfs info` still shows the last run (`scrub.lastRun`, metadata store).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, freshLayout, fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';
import { loadApiDoc, validate } from './helpers/openapi.js';
import { treeBytes } from './helpers/vpool.js';

const test = fuseTest();

test('vpoolfs scrub, scrub --backend then --apply, gc --dry-run on a mounted vPool', async (t) => {
  const l = await freshLayout(t);
  const mountOpts = { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: [...(await noAutoSnapshots(l.root)), '--metrics', '127.0.0.1:0'] };
  const m = await startMount(t, mountOpts);
  const cli = (args: string): Promise<string> => ok(t, `node ${q(CLI)} ${args}`, 120_000);
  const disk = m.p('disk');
  const md5 = (f: string): Promise<string> => ok(t, `md5sum < ${q(f)}`);
  /** Overwrites the first MiB a few times, with snapshots (deleted again) in between: garbage. */
  const churn = async (tag: string): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=64k count=16 conv=notrunc,fsync status=none`);
      await cli(`snapshot create ${q(disk)} ${tag}${i}`);
      if (i > 0) await cli(`snapshot delete ${q(disk)} ${tag}${i - 1}`);
    }
  };
  /** Until every snapshot of the disk is in the backend (a scrubber elsewhere sees only the backend). */
  const inBackend = async (): Promise<void> => {
    for (let i = 0; i < 600; i++) {
      const list = JSON.parse(await cli(`snapshot list ${q(disk)} --json`)) as Array<{ inBackend: boolean }>;
      if (list.every((s) => s.inBackend)) return;
      await sleep(100);
    }
    t.fail('the snapshots never reached the backend');
  };
  await cli(`create ${q(disk)} 4M`);
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=64k count=64 conv=notrunc status=none`);
  await cli(`snapshot create ${q(disk)} base`);
  await cli(`clone ${q(disk)} ${q(m.p('c1'))} --snapshot base`);
  const baseSum = await md5(m.p('c1'));
  await churn('a');
  await inBackend();
  const sum = await md5(disk);
  const id = (JSON.parse(await cli(`info ${q(disk)} --json`)) as { id: string }).id;
  const before = treeBytes(path.join(l.backendDir, 'vdisks', id));

  const rep = JSON.parse(await cli(`scrub ${q(disk)} --json`)) as { outcome: string; swept: { bytes: number }; stats: { bytesWritten: number } };
  t.is(rep.outcome, 'applied');
  t.true(rep.swept.bytes > 0, 'the scrub freed backend space');
  const after = treeBytes(path.join(l.backendDir, 'vdisks', id));
  t.log(`backend bytes of the vDisk: ${before} before the scrub, ${after} after; ${rep.stats.bytesWritten} written, ${rep.swept.bytes} freed`);
  t.true(after < before, 'the vDisk takes less backend space');
  t.is(await md5(disk), sum, 'the vDisk reads the same');
  t.is(await md5(m.p('c1')), baseSum, 'its clone reads the same');
  const info = JSON.parse(await cli(`info ${q(disk)} --json`)) as { scrub: { last: { id: string } | null; garbageBytes: number } };
  t.truthy(info.scrub.last?.id, 'user.vdisk.info names the last scrub');
  t.regex(await cli(`gc --dry-run ${q(m.mountpoint)}`), /^0 object\(s\) would be deleted$/m);
  // an orphan namespace (what a clone cut short by a host loss leaves: objects no tree names), only on the root
  t.regex(await cli(`gc --dry-run ${q(m.mountpoint)}`), /^0 orphan vDisk namespace\(s\) would be deleted$/m, 'none before');
  const orphan = path.join(l.backendDir, 'vdisks', '0rphan00-0000-4000-8000-000000000000');
  fs.mkdirSync(path.join(orphan, 'tlog'), { recursive: true });
  fs.writeFileSync(path.join(orphan, 'base'), 'a clone base nothing names');
  fs.writeFileSync(path.join(orphan, 'tlog', '0000000000000001'), 'a TLog nothing names');
  t.notRegex(await cli(`gc --dry-run ${q(disk)}`), /orphan/, 'a vDisk\'s gc does not look at namespaces');
  const listed = await cli(`gc --dry-run ${q(m.mountpoint)}`);
  t.regex(listed, /^would delete vdisks\/0rphan00-0000-4000-8000-000000000000\/  \(the vPool: vDisk namespace that no tree, clone lineage or pending creation names \(2 objects, \d+ bytes\)/m);
  t.true(fs.existsSync(orphan), 'a dry run deletes nothing');
  t.regex(await cli(`gc ${q(m.mountpoint)}`), /^1 orphan vDisk namespace\(s\) deleted$/m);
  t.deepEqual(fs.existsSync(orphan) ? fs.readdirSync(orphan, { recursive: true }).filter((f) => fs.statSync(path.join(orphan, String(f))).isFile()) : [], [], 'the orphan\'s objects are gone');
  t.is(await md5(disk), sum, 'the vDisk reads the same');
  t.is(await md5(m.p('c1')), baseSum, 'its clone too');

  // the other host: the job against the backend alone, then the daemon applies its result
  await churn('b');
  await inBackend();
  const sum2 = await md5(disk);
  const remote = await cli(`scrub --backend ${q(l.backend)} --scratch ${q(path.join(l.root, 'scratch'))} --vdisk ${id}`);
  t.regex(remote, new RegExp(`^${id}: result \\S+; read .* to free once applied`, 'm'));
  t.regex(await cli(`scrub --apply ${q(disk)}`), /: applied; .*freed/);
  t.is(await md5(disk), sum2, 'the vDisk reads the same after the remote scrub');
  t.is(await md5(m.p('c1')), baseSum);
  t.regex(await cli(`gc --dry-run ${q(disk)}`), /^0 object\(s\) would be deleted$/m);

  // the metrics count both scrubs and what they reclaimed
  const text = await fetch(`http://${String(logEntries(m.log, 'metrics listening')[0]?.address)}/metrics`).then((r) => r.text());
  t.regex(text, /vpoolfs_scrubs\{vpool="vp"\} 2\n/);
  t.regex(text, /vpoolfs_scrub_failures\{vpool="vp"\} 0\n/);
  const reclaimed = Number(/vpoolfs_scrub_reclaimed_bytes\{vpool="vp"\} (\d+)/.exec(text)?.[1]);
  t.true(reclaimed >= rep.swept.bytes, `vpoolfs_scrub_reclaimed_bytes ${reclaimed}`);

  // the last run (the --apply) is kept across a restart of the daemon: the API view and `vpoolfs info` show it
  type LastRun = { at: number; outcome: string; freedBytes: number } | null;
  const lastRun = async (): Promise<LastRun> => (JSON.parse(await cli(`info ${q(disk)} --json`)) as { scrub: { lastRun: LastRun } }).scrub.lastRun;
  const run = await lastRun();
  const doc = loadApiDoc();
  t.deepEqual(validate(doc, doc.components.schemas.VDisk, JSON.parse(await cli(`info ${q(disk)} --json`))), [], 'the view with a lastRun is as docs/api.yaml says');
  t.is(run?.outcome, 'applied');
  t.true((run?.freedBytes ?? 0) > 0, 'the last run freed bytes');
  t.is(await m.stop(), 0, 'the daemon stopped cleanly');
  await startMount(t, mountOpts);
  t.deepEqual(await lastRun(), run, 'info --json: scrub.lastRun survives the restart');
  t.regex(await cli(`info ${q(disk)}`), /^last scrub: +applied at \S+ in [\d.]+ s, freed [^;]+; .* garbage left$/m, '`vpoolfs info` shows it');
});
