/**
 * The CLI's management verbs over the API on a real mount: ls [-l], du, info, create, resize, rm, status
 * (--pid, --wait across a kill -9 and a restart), --json everywhere, human sizes by default, --version;
 * a path outside a mounted vPool, a stale mount, and each refusal print one clear line naming the path.
 */
import { readFileSync } from 'node:fs';
import { CLI, freshLayout, fuseTest, MountHandle, ok, q, sh, startMount } from './helpers/mount.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';
import { mountShows } from './helpers/api.js';

const test = fuseTest();
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

test('ls, du, info, create, resize, rm: human by default, --json, refusals that name the path', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const cli = (args: string, cwd = m.mountpoint): Promise<string> => ok(t, `cd ${q(cwd)} && node ${q(CLI)} ${args}`);
  const fails = async (args: string, cwd = m.mountpoint) => {
    const r = await sh(`cd ${q(cwd)} && node ${q(CLI)} ${args}`);
    t.is(r.code, 1, `${args} should fail: ${r.stdout}`);
    t.is(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    return r.stderr.trim();
  };

  t.is((await cli('--version')).trim(), VERSION);
  await ok(t, `mkdir ${q(m.p('vms'))}`);
  t.is((await cli('create vms/root.img 20G')).trim(), 'created vms/root.img: 20G (21474836480 bytes), thin');
  t.is(await fails('create vms/root.img 1G'), 'vpoolfs: create vms/root.img (1073741824 bytes): already exists: /vms/root.img (EEXIST)');
  t.regex(await fails('create big.img 100T'), /^vpoolfs: create big\.img \(109951162777600 bytes\): .*64 TiB.* \(EFBIG\)$/);
  t.is((await sh(`ls ${q(m.p('big.img'))}`)).code, 2, 'the refused create left no empty file');
  t.regex(await fails('create x.img lots'), /not a size: "lots"/);
  await ok(t, `head -c 3M /dev/urandom | dd of=${q(m.p('vms/root.img'))} bs=1M conv=notrunc,fsync status=none iflag=fullblock`);

  // ls: names, -l with human sizes, a vDisk alone, --json is the API's answer
  t.is(await cli('ls'), 'vms/\n');
  t.is(await cli('ls vms'), 'root.img\n');
  const long = await cli('ls -l vms');
  t.regex(long, /^MODE +SIZE +ALLOC +OWN +BACKEND +SNAPS +DTL +OPEN +PARENT +NAME\n-rw-r--r-- +20G +3\.0M +3\.0M +\S+ +0 +none +0 +- +root\.img\n$/);
  t.regex(await cli('ls -l vms/root.img'), /\n-rw-r--r-- +20G +3\.0M .* root\.img\n$/);
  const json = JSON.parse(await cli('ls --json')) as { entries: Array<{ name: string; kind: string }> };
  t.deepEqual(json.entries.map((e) => [e.name, e.kind]), [['vms', 'dir']]);

  // resize and info
  t.is((await cli('resize vms/root.img 1G')).trim(), 'vms/root.img: 1.0G (1073741824 bytes)');
  await mountShows(t, async () => (await ok(t, `stat -c %s ${q(m.p('vms/root.img'))}`)).trim(), '1073741824', 'the mount shows the new size');
  t.regex(await fails('resize vms/root.img 65T'), /^vpoolfs: resize vms\/root\.img to 71468255805440 bytes: .* \(EFBIG\)$/);
  t.regex(await fails('resize vms 1G'), /^vpoolfs: change vms: vms is a directory, not a vDisk \(EISDIR\)$/);
  const info = await cli('info vms/root.img');
  t.regex(info, /^size: +1\.0G \(1073741824 bytes\)$/m);
  t.regex(info, /^allocated: +3\.0M: own 3\.0M, inherited 0$/m);
  t.regex(info, /^open handles: +0$/m);
  t.like(JSON.parse(await cli('info vms/root.img --json')), { path: 'vms/root.img', size: 2 ** 30, allocatedBytes: 3 * 2 ** 20 });
  t.regex(await fails('info vms/nope.img'), /^vpoolfs: show vms\/nope\.img: .*nope\.img.* \(ENOENT\)$/);

  // du: own bytes per vDisk, a total, --json (the clone made with a progress bar, forced on a pipe)
  const cloned = await sh(`cd ${q(m.mountpoint)} && node ${q(CLI)} clone vms/root.img vms/clone.img --progress`);
  t.is(cloned.code, 0, cloned.stderr);
  t.regex(cloned.stderr, /clone vms\/root\.img \[[=\-\u2588\u2591 ]*\] 100% \| \S+\/\S+ \| \d+\/\d+ objects \| \S+\/s/, 'the bar ends at 100% with bytes, objects and rate');
  const du = await cli('du');
  t.regex(du, /^ *OWN +INHERITED +BACKEND +SIZE +PATH$/m);
  t.regex(du, /^ *\S+ +\S+ +\S+ +2\.0G +total \(2 vDisks/m);
  const duJson = JSON.parse(await cli('du vms --json')) as { vdisks: Array<{ path: string }>; total: { sizeBytes: number; ownBytes: number; inheritedBytes: number } };
  t.deepEqual(duJson.vdisks.map((x) => x.path).sort(), ['vms/clone.img', 'vms/root.img']);
  t.is(duJson.total.sizeBytes, 2 ** 31);
  t.deepEqual([duJson.total.ownBytes, duJson.total.inheritedBytes], [3 * 2 ** 20, 3 * 2 ** 20], "the clone's data is the parent's: counted once as own, once as inherited");
  t.regex(await cli('info vms/clone.img'), /^allocated: +0: own 0, inherited 3\.0M$/m);
  t.is((await ok(t, `du -s -B1 ${q(m.mountpoint)}`)).split('\t')[0], String(3 * 2 ** 20 + 2 * 4096), 'du of the mount counts the data once (plus its two directories)');

  // rm: refused with clones (the sentence says so), then works; the mount no longer shows it
  t.regex(await fails('rm vms/root.img'), /^vpoolfs: delete vms\/root\.img: .*has clones.* \(EBUSY\)$/);
  t.is((await cli('rm vms/clone.img')).trim(), 'removed vms/clone.img');
  await mountShows(t, async () => String((await sh(`stat ${q(m.p('vms/clone.img'))}`)).code), '1', 'the mount no longer shows it');
  t.deepEqual(JSON.parse(await cli('rm vms/root.img --json')), { removed: ['vms/root.img'] });
  t.is(await cli('ls vms'), '');

  // paths outside a vPool: a clear refusal naming the path, nothing created
  t.regex(await fails('info /etc/hostname', '/'), /^vpoolfs: \/etc\/hostname: not on a mounted vPool \(.*\); mounted vPools: .*$/);
  t.regex(await fails(`create ${q(l.root + '/x.img')} 1G`, '/'), /^vpoolfs: .*\/x\.img: not on a mounted vPool/);
  t.is((await sh(`ls ${q(l.root + '/x.img')}`)).code, 2);
  t.regex(await fails(`ls ${q(l.root)}`, '/'), /not on a mounted vPool/);
});

test('status: human and --json, --pid is the daemon, --wait rides over a kill -9 and a restart; a stale mount is named', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const cli = (args: string): Promise<string> => ok(t, `node ${q(CLI)} ${args}`);
  const text = await cli(`status ${q(m.mountpoint)}`);
  t.regex(text, new RegExp(`^vPool: +vp at ${m.mountpoint}$`, 'm'));
  t.regex(text, new RegExp(`^daemon: +pid ${m.pid}, vpoolfs ${VERSION.replace(/\./g, '\\.')}, `, 'm'));
  t.regex(text, /^backend: +file:\/\/.*: reachable \(\d+ ms\)$/m);
  t.regex(text, /^write cache: +\S+ of 1\.0G/m);
  const s = JSON.parse(await cli(`status ${q(m.mountpoint)} --json`)) as { pid: number; backend: { reachable: boolean } };
  t.is(s.pid, m.pid);
  t.is((await ok(t, `cd ${q(m.mountpoint)} && node ${q(CLI)} status --pid`)).trim(), String(m.pid), 'from inside the vPool, no path needed');

  await m.kill9();
  const stale = await sh(`node ${q(CLI)} info ${q(m.p('x'))}`);
  t.is(stale.code, 1);
  t.regex(stale.stderr, /does not answer \(ENOTCONN: its daemon is gone\)/);
  const again = new MountHandle({ mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  t.teardown(() => again.stop(30_000));
  const waited = await sh(`node ${q(CLI)} status ${q(m.mountpoint)} --wait 60 --pid`, { timeoutMs: 90_000 });
  t.is(waited.code, 0, waited.stderr);
  t.is(waited.stdout.trim(), String(again.pid), 'the new daemon answered');
});
