/**
 * The management API (api/) on a real mount, through its unix socket: every route, every refusal (JSON
 * error with a stable code, the errno, a sentence naming the object), and that what it changes is what the
 * mount shows at once (the kernel's caches are told). TCP: a token is required, and an address off loopback
 * without one refuses the mount.
 */
import { stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { api, apiOf, mountShows, pathParam, refused } from './helpers/api.js';
import { CLI, freshLayout, fuseTest, ok, q, sh, startMount } from './helpers/mount.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';

const test = fuseTest();
const MiB = 2 ** 20;
const v = (p: string, tail = '') => `/v1/vdisks/${pathParam(p)}${tail}`;

test('vDisks: create, list, show, resize, DTL, delete, and their refusals', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const A = apiOf(l.state);
  t.is((await stat(path.join(l.state, 'api.sock'))).mode & 0o777, 0o600, 'the socket is root only');

  // create
  await ok(t, `mkdir -p ${q(m.p('vms/web'))}`);
  const created = await api(A, 'POST', '/v1/vdisks', { path: 'vms/web/root.img', size: 20 * 2 ** 30 });
  t.is(created.status, 201);
  t.like(created.body, { path: 'vms/web/root.img', size: 20 * 2 ** 30, allocatedBytes: 0, ownBytes: 0, inheritedBytes: 0, template: false, parent: null, openHandles: 0, snapshots: [] });
  t.is((await ok(t, `stat -c %s ${q(m.p('vms/web/root.img'))}`)).trim(), String(20 * 2 ** 30), 'the mount shows it at once');
  refused(t, await api(A, 'POST', '/v1/vdisks', { path: 'vms/web/root.img', size: 1 }), 409, 'EXISTS', 'EEXIST', ['vms/web/root.img']);
  refused(t, await api(A, 'POST', '/v1/vdisks', { path: 'big.img', size: 100 * 2 ** 40 }), 400, 'TOO_BIG', 'EFBIG', ['big.img', '64 TiB']);
  t.is((await sh(`ls ${q(m.p('big.img'))}`)).code, 2, 'a refused create leaves no empty file behind');
  refused(t, await api(A, 'POST', '/v1/vdisks', { path: 'nodir/x.img', size: 1 }), 404, 'NOT_FOUND', 'ENOENT', ['nodir/x.img']);
  refused(t, await api(A, 'POST', '/v1/vdisks', { path: 'x.img' }), 400, 'BAD_REQUEST', 'EINVAL', ['x.img', '"size"']);
  refused(t, await api(A, 'POST', '/v1/vdisks', { path: '../x.img', size: 1 }), 400, 'BAD_REQUEST', 'EINVAL', ['../x.img']);

  // show, list, entries
  await ok(t, `head -c ${MiB} /dev/urandom > ${q(l.root + '/data')} && dd if=${q(l.root + '/data')} of=${q(m.p('vms/web/root.img'))} bs=1M conv=notrunc,fsync status=none`);
  await ok(t, `truncate -s 1G ${q(m.p('top.img'))}`);
  const one = await api(A, 'GET', v('vms/web/root.img'));
  t.is(one.status, 200);
  t.like(one.body, { path: 'vms/web/root.img', allocatedBytes: MiB, ownBytes: MiB, dtl: { mode: 'none' } });
  refused(t, await api(A, 'GET', v('nope.img')), 404, 'NOT_FOUND', 'ENOENT', ['nope.img']);
  refused(t, await api(A, 'GET', v('vms')), 400, 'IS_DIR', 'EISDIR', ['vms', 'directory']);
  const all = await api(A, 'GET', '/v1/vdisks');
  t.deepEqual(all.body.vdisks.map((x: { path: string }) => x.path).sort(), ['top.img', 'vms/web/root.img']);
  const flat = await api(A, 'GET', '/v1/vdisks?recursive=false');
  t.deepEqual(flat.body.vdisks.map((x: { path: string }) => x.path), ['top.img']);
  const under = await api(A, 'GET', '/v1/vdisks?dir=vms');
  t.deepEqual(under.body.vdisks.map((x: { path: string }) => x.path), ['vms/web/root.img']);
  refused(t, await api(A, 'GET', '/v1/vdisks?dir=top.img'), 400, 'NOT_DIR', 'ENOTDIR', ['top.img']);
  const entries = await api(A, 'GET', '/v1/entries?dir=/');
  t.deepEqual(entries.body.entries.map((e: { name: string; kind: string }) => [e.name, e.kind]).sort(), [['top.img', 'vdisk'], ['vms', 'dir']]);
  refused(t, await api(A, 'GET', '/v1/entries?dir=missing'), 404, 'NOT_FOUND', 'ENOENT', ['missing']);

  // resize: the mount shows the new size at once; a shrink drops the data past it (cached pages too)
  await ok(t, `cat ${q(m.p('vms/web/root.img'))} | head -c ${MiB} > /dev/null`);
  const shrunk = await api(A, 'PATCH', v('vms/web/root.img'), { size: 4096 });
  t.is(shrunk.status, 200);
  t.is(shrunk.body.size, 4096);
  await mountShows(t, async () => (await ok(t, `stat -c %s ${q(m.p('vms/web/root.img'))}`)).trim(), '4096', 'the mount shows the new size');
  await api(A, 'PATCH', v('vms/web/root.img'), { size: MiB });
  t.is((await ok(t, `cmp -n 4096 ${q(m.p('vms/web/root.img'))} ${q(l.root + '/data')} && tail -c +4097 ${q(m.p('vms/web/root.img'))} | tr -d '\\0' | wc -c`)).trim(), '0', 'grown back: zeros past the shrink');
  refused(t, await api(A, 'PATCH', v('vms/web/root.img'), { size: 65 * 2 ** 40 }), 400, 'TOO_BIG', 'EFBIG', ['vms/web/root.img']);
  refused(t, await api(A, 'PATCH', v('vms/web/root.img'), { size: -1 }), 400, 'BAD_REQUEST', 'EINVAL', ['vms/web/root.img', '"size"']);
  refused(t, await api(A, 'PATCH', v('vms/web/root.img'), {}), 400, 'BAD_REQUEST', 'EINVAL', ['vms/web/root.img']);
  refused(t, await api(A, 'PATCH', v('vms/web/root.img'), { dtl: 'fast' }), 400, 'INVALID', 'EINVAL', ['vms/web/root.img', 'fast']);
  refused(t, await api(A, 'PATCH', v('vms/web/root.img'), { dtl: 'sync' }), 400, 'INVALID', 'EINVAL', ['vms/web/root.img']);
  t.is((await api(A, 'PATCH', v('vms/web/root.img'), { dtl: 'none' })).body.dtl.mode, 'none');

  // delete: refused while open (the sentence says so), then gone from the mount at once
  const holder = spawn('bash', ['-c', `exec 3<${q(m.p('top.img'))}; echo open; sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise((resolve) => holder.stdout!.once('data', resolve));
  const busy = await api(A, 'DELETE', v('top.img'));
  refused(t, busy, 409, 'BUSY', 'EBUSY', ['delete top.img', `top.img is open by pid ${holder.pid} (sleep)`]);
  t.is((await api(A, 'GET', v('top.img'))).body.openHandles, 1);
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  await ok(t, `stat ${q(m.p('top.img'))}`);
  const del = await api(A, 'DELETE', v('top.img'));
  t.is(del.status, 204);
  await mountShows(t, async () => String((await sh(`stat ${q(m.p('top.img'))}`)).code), '1', 'the mount no longer shows it');
  refused(t, await api(A, 'DELETE', v('top.img')), 404, 'NOT_FOUND', 'ENOENT', ['top.img']);
  refused(t, await api(A, 'DELETE', v('vms')), 400, 'IS_DIR', 'EISDIR', ['vms']);
});

test('snapshots, rollback, clone, template through the API, and their refusals', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const A = apiOf(l.state);
  await ok(t, `head -c ${2 * MiB} /dev/urandom > ${q(l.root + '/a')} && head -c ${2 * MiB} /dev/urandom > ${q(l.root + '/b')}`);
  await ok(t, `cp ${q(l.root + '/a')} ${q(m.p('d'))} && sync ${q(m.p('d'))}`);

  const s1 = await api(A, 'POST', v('d', '/snapshots'), { name: 's1' });
  t.is(s1.status, 201);
  t.like(s1.body, { name: 's1', sticky: false, automatic: false, clones: [] });
  t.like((await api(A, 'POST', v('d', '/snapshots'), { name: 's2', sticky: true })).body, { name: 's2', sticky: true });
  refused(t, await api(A, 'POST', v('d', '/snapshots'), { name: 's1' }), 409, 'EXISTS', 'EEXIST', ['s1', 'of d']);
  refused(t, await api(A, 'POST', v('d', '/snapshots'), { name: 'a/b' }), 400, 'INVALID', 'EINVAL', ['a/b', 'of d']);
  refused(t, await api(A, 'POST', v('d', '/snapshots'), {}), 400, 'BAD_REQUEST', 'EINVAL', ['"name"']);
  refused(t, await api(A, 'POST', v('nope', '/snapshots'), { name: 'x' }), 404, 'NOT_FOUND', 'ENOENT', ['nope']);
  const list = await api(A, 'GET', v('d', '/snapshots'));
  t.deepEqual(list.body.map((s: { name: string; sticky: boolean }) => [s.name, s.sticky]), [['s1', false], ['s2', true]]);
  t.like((await api(A, 'PATCH', v('d', '/snapshots/s2'), { sticky: false })).body, { name: 's2', sticky: false });
  refused(t, await api(A, 'PATCH', v('d', '/snapshots/zz'), { sticky: true }), 404, 'NOT_FOUND', 'ENOENT', ['zz', 'd']);
  refused(t, await api(A, 'PATCH', v('d', '/snapshots/s2'), { sticky: 'yes' }), 400, 'BAD_REQUEST', 'EINVAL', ['"sticky"']);
  t.is((await api(A, 'DELETE', v('d', '/snapshots/s2'))).status, 204);
  refused(t, await api(A, 'DELETE', v('d', '/snapshots/s2')), 404, 'NOT_FOUND', 'ENOENT', ['s2', 'd']);

  // rollback: refused while open, then the mount reads the snapshot's bytes (its cached pages are dropped)
  await ok(t, `dd if=${q(l.root + '/b')} of=${q(m.p('d'))} bs=1M conv=notrunc,fsync status=none && cmp ${q(m.p('d'))} ${q(l.root + '/b')}`);
  const holder = spawn('bash', ['-c', `exec 3<${q(m.p('d'))}; echo open; sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise((resolve) => holder.stdout!.once('data', resolve));
  refused(t, await api(A, 'POST', v('d', '/rollback'), { snapshot: 's1' }), 409, 'BUSY', 'EBUSY', ['roll back d to "s1"', `d is open by pid ${holder.pid} (sleep)`]);
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  refused(t, await api(A, 'POST', v('d', '/rollback'), { snapshot: 'nope' }), 404, 'NOT_FOUND', 'ENOENT', ['d', '"nope"']);
  refused(t, await api(A, 'POST', v('d', '/rollback'), {}), 400, 'BAD_REQUEST', 'EINVAL', ['"snapshot"']);
  const rb = await api(A, 'POST', v('d', '/rollback'), { snapshot: 's1' });
  t.is(rb.status, 200);
  await ok(t, `cmp ${q(m.p('d'))} ${q(l.root + '/a')}`);

  // clone: from a named snapshot, from one taken now; refusals name the target or the snapshot
  await ok(t, `mkdir ${q(m.p('vms'))}`);
  const c1 = await api(A, 'POST', v('d', '/clones'), { target: 'vms/c1', snapshot: 's1' });
  t.is(c1.status, 201);
  t.like(c1.body, { path: 'vms/c1', parent: { path: 'd', snapshot: 's1' }, allocatedBytes: 0, ownBytes: 0, inheritedBytes: 2 * MiB });
  t.is((await ok(t, `du -B1 ${q(m.p('vms/c1'))}`)).split('\t')[0], '0', "du of a fresh clone counts its own data: none yet (the parent's is inherited)");
  await ok(t, `cmp ${q(m.p('vms/c1'))} ${q(l.root + '/a')}`);
  await ok(t, `dd if=/dev/zero of=${q(m.p('vms/c1'))} bs=4k count=3 conv=notrunc,fsync status=none`);
  t.like((await api(A, 'GET', v('vms/c1'))).body, { allocatedBytes: 3 * 4096, ownBytes: 3 * 4096, inheritedBytes: 2 * MiB - 3 * 4096 });
  t.is((await ok(t, `du -B1 ${q(m.p('vms/c1'))}`)).split('\t')[0], String(3 * 4096));
  const c2 = await api(A, 'POST', v('d', '/clones'), { target: '/vms/c2' });
  t.is(c2.status, 201);
  t.is(c2.body.parent.path, 'd');
  refused(t, await api(A, 'POST', v('d', '/clones'), { target: 'vms/c1', snapshot: 's1' }), 409, 'EXISTS', 'EEXIST', ['vms/c1', 'exists']);
  refused(t, await api(A, 'POST', v('d', '/clones'), { target: 'vms/c3', snapshot: 'gone' }), 404, 'NOT_FOUND', 'ENOENT', ['"gone"', 'd']);
  refused(t, await api(A, 'POST', v('d', '/clones'), { target: 'nodir/c3', snapshot: 's1' }), 404, 'NOT_FOUND', 'ENOENT', ['nodir/c3']);
  refused(t, await api(A, 'DELETE', v('d', '/snapshots/s1')), 409, 'BUSY', 'EBUSY', ['s1', 'vms/c1']);
  refused(t, await api(A, 'DELETE', v('d')), 409, 'BUSY', 'EBUSY', ['d', 'clones']);
  t.deepEqual((await api(A, 'GET', v('d'))).body.clones, ['vms/c1', 'vms/c2']);

  // template: read-only from then on
  const tp = await api(A, 'POST', v('vms/c2', '/template'));
  t.is(tp.status, 200);
  t.true(tp.body.template);
  t.regex((await sh(`dd if=/dev/zero of=${q(m.p('vms/c2'))} bs=4k count=1 conv=notrunc status=none`)).stderr, /Read-only file system/);
  t.is(tp.body.mode, 0o444, 'a template shows no write bits');
  await mountShows(t, async () => (await ok(t, `stat -c %A ${q(m.p('vms/c2'))}`)).trim(), '-r--r--r--', 'the mount shows it read-only');
  const chmod = await sh(`chmod 666 ${q(m.p('vms/c2'))}`);
  t.not(chmod.code, 0);
  t.regex(chmod.stderr, /Read-only file system/);
  await ok(t, `chmod 400 ${q(m.p('vms/c2'))}`);
  t.is((await ok(t, `stat -c %a ${q(m.p('vms/c2'))}`)).trim(), '400', 'taking bits away is allowed');
  refused(t, await api(A, 'POST', v('vms/c2', '/snapshots'), { name: 'late' }), 409, 'READ_ONLY', 'EROFS', ['vms/c2']);
  refused(t, await api(A, 'POST', v('vms', '/template')), 400, 'IS_DIR', 'EISDIR', ['vms']);
});

test('status, unknown routes, bad bodies; TCP needs its token; off loopback without a token the mount is refused', async (t) => {
  const l = await freshLayout(t);
  const tokenFile = path.join(l.root, 'token');
  await writeFile(tokenFile, 'a-long-enough-secret-token\n');
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--api', '127.0.0.1:0', '--api-token-file', tokenFile] });
  const A = apiOf(l.state);
  const s = await api(A, 'GET', '/v1/status');
  t.is(s.status, 200);
  t.like(s.body, { vpool: 'vp', mountpoint: l.mountpoint, stateDir: l.state, pid: m.pid, backend: { url: l.backend, reachable: true, error: null }, usage: { vdisks: 0 }, openHandles: 0 });
  t.is(s.body.api.socket, path.join(l.state, 'api.sock'));
  t.regex(s.body.api.tcp, /^127\.0\.0\.1:\d+$/);
  t.true(s.body.writeCache.limitBytes > 0 && s.body.readCache.limitBytes > 0);

  refused(t, await api(A, 'GET', '/v1/nothing'), 404, 'NO_ROUTE', 'ENOENT', ['/v1/nothing']);
  refused(t, await api(A, 'PUT', '/v1/status'), 405, 'METHOD_NOT_ALLOWED', 'EINVAL', ['PUT', '/v1/status']);
  refused(t, await api(A, 'POST', '/v1/vdisks', '{not an object}'), 400, 'BAD_REQUEST', 'EINVAL', ['create a vDisk', 'JSON object']);

  const port = Number(s.body.api.tcp.split(':')[1]);
  refused(t, await api({ host: '127.0.0.1', port, token: null }, 'GET', '/v1/status'), 401, 'UNAUTHORIZED', 'EACCES', ['Authorization']);
  refused(t, await api({ host: '127.0.0.1', port, token: 'wrong-token-of-some-length' }, 'GET', '/v1/status'), 401, 'UNAUTHORIZED', 'EACCES', ['Authorization']);
  t.is((await api({ host: '127.0.0.1', port, token: 'a-long-enough-secret-token' }, 'GET', '/v1/status')).status, 200);

  const l2 = await freshLayout(t);
  const open = await sh(`node ${q(CLI)} mount ${q(l2.mountpoint)} --state ${q(l2.state)} --backend ${q(l2.backend)} --api 0.0.0.0:0`, { timeoutMs: 60_000 });
  t.is(open.code, 1);
  t.regex(open.stderr, /--api 0\.0\.0\.0: .*only with a token \(--api-token-file\)/);
  t.is((await sh(`mountpoint -q ${q(l2.mountpoint)}`)).code === 0, false, 'nothing mounted');
});
