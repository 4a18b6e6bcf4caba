/**
 * Ownership per vDisk through real daemons, mounts, etcd and TCP (docs/cluster.md, "Ownership per vDisk"):
 * `vpoolfs move FILE --to rb` hands that one vDisk to the follower rb while checking writers write it through both
 * routers' mounts (ra the vPool's owner, rb its follower); rb serves it from then on (ra's mount and router link
 * forward its per-file calls to rb), a truncate through rb is seen through ra, the vPool and its other vDisk stay
 * ra's; then `vpoolfs move FILE --to ra` brings it back. No writer sees an error, every acknowledged write reads
 * back through both mounts, and the refusals leave everything as it was.
 */
import { CLI, fuseTest, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { badBlocks, startWriter } from './helpers/dtl-mount.js';

const test = fuseTest();

test('vpoolfs move FILE: one vDisk to the follower and back under writers through both mounts: no error, every byte', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra', [], { autoMove: false }));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  await ok(t, `truncate -s 16M ${q(a.p('other'))}`);
  const b = await startMount(t, c.router('rb', [], { autoMove: false }));
  const move = (file: string, to: string) => sh(`node ${q(CLI)} move ${q(file)} --to ${to} --registry ${q(c.etcd.url)}`);
  const size = async (file: string) => Number((await ok(t, `stat -c %s ${q(file)}`)).trim());

  // refused, nothing changed: an unknown router, the owner (it serves the vDisk already)
  let r = await move(a.p('disk'), 'rz');
  t.is(r.code, 1);
  t.regex(r.stderr, /unknown router 'rz'/);
  r = await move(b.p('disk'), 'ra');
  t.is(r.code, 1);
  t.regex(r.stderr, /served by router 'ra' \(the vPool's owner\) already/);

  const wb = startWriter(b.p('disk'), 0, 64);
  const wa = startWriter(a.p('disk'), 16384, 64);
  await wb.waitFor(100 + Math.floor(Math.random() * 300));
  await wa.waitFor(100);

  r = await move(a.p('disk'), 'rb');
  t.is(r.code, 0, r.stderr + r.stdout);
  t.log(r.stdout.trim());
  t.regex(r.stdout, /^Moving vDisk \/disk of vPool 'pool' to router 'rb'/m);
  t.regex(r.stdout, /^Moved: vDisk \/disk is served by router 'rb' now \(owner tag \d+\)/m);
  t.is(logEntries(b.log, /^MOVE: serving vDisk \/disk of vPool 'pool' here/).length, 1, b.log.slice(-4000));
  const rows = await c.routers();
  t.deepEqual(rows.map((x) => [x.name, x.role]), [['ra', 'owner'], ['rb', 'follower']], 'the vPool stays ra\'s');

  // both writers go on, now on rb; a truncate through rb is seen through ra (the size comes from rb)
  await wb.waitFor(wb.acked.length + 300);
  await wa.waitFor(wa.acked.length + 300);
  await ok(t, `truncate -s 136M ${q(b.p('disk'))}`);
  await until('ra sees rb\'s size', async () => (await size(a.p('disk'))) === 136 * 2 ** 20);
  // ra's own vDisk is still ra's
  await ok(t, `truncate -s 20M ${q(a.p('other'))}`);
  t.is(await size(b.p('other')), 20 * 2 ** 20);

  r = await move(b.p('disk'), 'ra');
  t.is(r.code, 0, r.stderr + r.stdout);
  t.log(r.stdout.trim());
  t.regex(r.stdout, /^Moved: vDisk \/disk is served by router 'ra' \(the vPool's owner\) again, taken back from router 'rb'/m);
  t.is(logEntries(b.log, /^MOVE: handed vDisk \/disk back to the vPool's owner/).length, 1);

  await wb.waitFor(Math.min(wb.acked.length + 300, 32768));
  await wa.waitFor(Math.min(wa.acked.length + 300, 32768 - 16384));
  await wb.stop();
  await wa.stop();
  t.is(wb.stderr, '', 'the writer on rb saw no error');
  t.is(wa.stderr, '', 'the writer on ra saw no error');
  t.is(await size(a.p('disk')), 136 * 2 ** 20);
  for (const m of [a, b]) {
    for (const w of [wa, wb]) {
      const bad = await badBlocks(t, m.p('disk'), w.acked);
      t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
    }
  }
  const since = (log: string) => log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-15).join('\n');
  if (!(t as unknown as { passed: boolean }).passed) t.log(`ra:\n${since(a.log)}\nrb:\n${since(b.log)}`);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});
