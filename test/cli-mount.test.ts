/**
 * `vpoolfs mount` as a command: bad flags, bad config files and options not implemented yet give a
 * clear message and a non-zero exit with nothing mounted; a busy mountpoint is refused; defaults
 * (vPool name = basename); the config file is watched (logLevel live, other keys need a restart);
 * Prometheus metrics on --metrics.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test0 from 'ava';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, DETACH_HOST_MOUNTS, freshLayout, fuseTest, isMounted, logEntries, ok, q, sh, startMount } from './helpers/mount.js';

const test = fuseTest();

async function refused(args: string, root: string): Promise<{ code: number; stderr: string; mounted: boolean }> {
  const mp = path.join(root, 'mnt');
  const r = await sh(`node ${q(CLI)} mount ${q(mp)} --state ${q(path.join(root, 'state'))} ${args}`, { timeoutMs: 30_000 });
  return { code: r.code, stderr: r.stderr, mounted: await isMounted(mp) };
}

test('bad flags, bad config files and unimplemented options: a clear message, non-zero exit, nothing mounted', async (t) => {
  const l = await freshLayout(t);
  const cfg = (name: string, text: string) => writeFile(path.join(l.root, name), text).then(() => q(path.join(l.root, name)));
  const cases: [string, RegExp][] = [
    ['--bogus', /unknown option '--bogus'/],
    ['--dtl maybe', /--dtl.*Allowed choices are none, async, sync/],
    ['--backend nonsense', /not a URL/],
    ['--backend ftp://x/y', /unsupported backend scheme/],
    ['--vpool "bad name"', /vPool name/],
    ['--dtl-server nohost', /expected HOST:PORT/],
    ['--metrics 127.0.0.1:99999', /expected HOST:PORT/],
    ['--dtl async', /--dtl async: needs --dtl-server/],
    ['--dtl sync', /--dtl sync: needs --dtl-server/],
    [`--dtl-server 127.0.0.1:7000 --dtl-secret-file ${q(path.join(l.root, 'nosecret'))}`, /--dtl-secret-file: cannot read the DTL secret file/],
    [`--encryption-key-file ${q(path.join(l.root, 'nokey'))}`, /cannot read it/],
    [`--encryption-key-file ${await cfg('short.key', 'abc')}`, /expected 32 raw bytes or 64 hex characters/],
    [`--config ${q(path.join(l.root, 'missing.json'))}`, /cannot read the config file/],
    [`--config ${await cfg('bad.json', '{"vpool": ')}`, /not valid JSON/],
    [`--config ${await cfg('array.json', '[]')}`, /expected a JSON object/],
    [`--config ${await cfg('unknown.json', '{"colour": "blue"}')}`, /unknown key "colour"/],
    [`--config ${await cfg('type.json', '{"writeCacheBytes": -5}')}`, /writeCacheBytes: expected a size/],
    [`--config ${await cfg('dtl.json', '{"dtl": "fast"}')}`, /dtl: expected one of none, async, sync/],
    [`--config ${await cfg('level.json', '{"logLevel": "loud"}')}`, /logLevel: expected one of/],
  ];
  for (const [args, message] of cases) {
    const r = await refused(args, l.root);
    t.not(r.code, 0, `${args} exits non-zero`);
    t.regex(r.stderr, message, `${args}: ${r.stderr}`);
    t.false(r.mounted, `${args}: nothing mounted`);
  }
});

test('a busy mountpoint is refused and the mount already there keeps working', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  await ok(t, `truncate -s 1M ${q(m.p('d'))}`);
  const r = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(path.join(l.root, 'state2'))}`, { timeoutMs: 30_000 });
  t.not(r.code, 0);
  t.regex(r.stderr, /busy/);
  t.is((await ok(t, `stat -c %s ${q(m.p('d'))}`)).trim(), String(2 ** 20));
  t.true(m.alive);
});

test('defaults: the vPool is named after the mountpoint; SIGINT stops cleanly too', async (t) => {
  const l = await freshLayout(t, 'pool-a');
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  t.is(logEntries(m.log, 'opening vPool', { vpool: 'pool-a', state: l.state, backend: l.backend, dtl: 'none' }).length, 1, m.log);
  // the request size each engine asks for: 1 MiB (kernel, the default) or 128 KiB (fuse-native's big_writes)
  const mountedEntry = logEntries(m.log, 'mounted')[0];
  if (mountedEntry?.engine === 'fuse-native') t.regex(String(mountedEntry.options), /big_writes,max_write=131072/);
  else t.like(mountedEntry, { engine: 'kernel', init: { maxWrite: 1048576, maxPages: 256 } }, m.log);
  t.regex(await ok(t, `findmnt -n -o FSTYPE,SOURCE ${q(l.mountpoint)}`), /fuse\.vpoolfs\s+vpoolfs:pool-a/);
  m.child.kill('SIGINT');
  const { code } = await m.exited;
  t.is(code, 0);
  t.false(await isMounted(l.mountpoint));
  t.is(logEntries(m.log, 'unmounted', { vpool: 'pool-a' }).length, 1, m.log);
});

test('the config file: its keys are used, logLevel and cache sizes apply live, other changes are logged as needing a restart', async (t) => {
  const l = await freshLayout(t);
  const file = path.join(l.root, 'vpool.json');
  await writeFile(file, JSON.stringify({ vpool: 'fromconfig', logLevel: 'info', writeCacheBytes: '256M' }));
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--config', file] });
  t.is(logEntries(m.log, 'opening vPool', { vpool: 'fromconfig' }).length, 1, m.log);
  const wait = async (message: string, fields: Record<string, unknown> = {}) => {
    for (let i = 0; i < 200 && logEntries(m.log, message, fields).length === 0; i++) await sleep(50);
    t.is(logEntries(m.log, message, fields).length, 1, `${message}:\n${m.log}`);
  };
  await writeFile(file, JSON.stringify({ vpool: 'fromconfig', logLevel: 'debug', writeCacheBytes: '512M', readCacheBytes: '64M', tlogScos: 4 }));
  await wait('config: logLevel applied', { logLevel: 'debug' });
  await wait('write-cache limit changed', { from: 256 * 2 ** 20, to: 512 * 2 ** 20 });
  await wait('read-cache limit changed', { to: 64 * 2 ** 20 });
  await wait('config: tlogScos changed; it takes effect after a restart', { value: 4 });
  await writeFile(file, '{ broken');
  await wait('config change ignored: the file is not valid');
  t.true(m.alive);
});

test('--metrics serves Prometheus metrics: operations, bytes, latency, per vDisk (top N), backend by operation, one prefix, no NaN', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--metrics', '127.0.0.1:0', '--metrics-top-vdisks', '2'] });
  await ok(t, `dd if=/dev/zero of=${q(m.p('d'))} bs=64k count=4 status=none && cat ${q(m.p('d'))} > /dev/null`);
  // three more vDisks, less busy than d: only the two busiest get per-vDisk series
  await ok(t, `for f in e f g; do dd if=/dev/zero of=${q(m.mountpoint)}/$f bs=4k count=1 status=none; done && dd if=/dev/zero of=${q(m.p('e'))} bs=4k count=2 conv=notrunc,fsync status=none`);
  await ok(t, `sync ${q(m.p('d'))}`);
  const address = logEntries(m.log, 'metrics listening')[0]?.address;
  t.truthy(address, m.log);
  const text = await fetch(`http://${address}/metrics`).then((r) => r.text());
  t.regex(text, /vpoolfs_fuse_ops_total\{op="write",result="ok",vpool="vp"\} \d+/);
  t.regex(text, /vpoolfs_fuse_bytes_total\{kind="write",vpool="vp"\} 282624/);
  t.regex(text, /vpoolfs_fuse_bytes_total\{kind="read",vpool="vp"\} \d+/);
  t.regex(text, /vpoolfs_fuse_op_duration_seconds_bucket\{[^}]*op="write"[^}]*\} [1-9]/);
  t.regex(text, /vpoolfs_dirty_bytes\{vpool="vp"\} \d+/);
  t.regex(text, /vpoolfs_write_cache_bytes\{vpool="vp"\} [1-9]\d*/, 'the 256 KiB written are in the write cache');
  t.regex(text, /vpoolfs_write_cache_limit_bytes\{vpool="vp"\} 1073741824/);
  t.regex(text, /vpoolfs_read_cache_hit_ratio\{vpool="vp"\} 0/, 'nothing was read from the backend yet');
  // one prefix: no vpoolfs_process_process_…; the event loop figures are numbers
  t.regex(text, /^vpoolfs_process_cpu_seconds_total\{vpool="vp"\} [\d.e-]+$/m);
  t.notRegex(text, /vpoolfs_process_process_|vpoolfs_process_nodejs_/);
  for (const s of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
    const v = new RegExp(`^vpoolfs_nodejs_eventloop_lag_${s}_seconds\\{vpool="vp"\\} (\\S+)$`, 'm').exec(text)?.[1];
    t.truthy(v, `lag ${s} is exported`);
    t.true(Number.isFinite(Number(v)) && Number(v) < 3600, `lag ${s} is a number of seconds, got ${v}`);
  }
  t.notRegex(text, /\bNaN\b/);
  // per vDisk: the two busiest (d, then e), not the others
  t.regex(text, /^vpoolfs_vdisk_bytes_total\{vdisk="\/d",kind="write",vpool="vp"\} 262144$/m);
  t.regex(text, /^vpoolfs_vdisk_ops_total\{vdisk="\/e",op="write",vpool="vp"\} \d+$/m);
  t.regex(text, /^vpoolfs_vdisk_op_seconds_total\{vdisk="\/d",op="read",vpool="vp"\} [\d.e-]+$/m);
  t.notRegex(text, /vdisk="\/[fg]"/, 'only the top 2 vDisks have series');
  // the backend by operation: the uploads of d's SCOs are puts with bytes
  const puts = Number(/^vpoolfs_backend_requests_total\{op="put",result="ok",vpool="vp"\} (\d+)$/m.exec(text)?.[1]);
  t.true(puts > 0, 'puts counted');
  t.regex(text, /^vpoolfs_backend_bytes_total\{op="put",vpool="vp"\} [1-9]\d*$/m);
  t.regex(text, /^vpoolfs_backend_request_duration_seconds_count\{[^}]*op="put"[^}]*\} [1-9]\d*$/m);
  t.regex(text, /^vpoolfs_backend_requests_total\{op="get",result="error",vpool="vp"\} \d+$/m);
  t.regex(text, /^vpoolfs_upload_lag_seconds\{vpool="vp"\} [\d.e-]+$/m);
  t.regex(text, /^vpoolfs_dtl_queued_bytes\{vpool="vp"\} 0$/m, 'DTL none: nothing queued');
  // docs/grafana-dashboard.json charts only metrics the daemon serves
  const dashboard = readFileSync(fileURLToPath(new URL('../../docs/grafana-dashboard.json', import.meta.url)), 'utf8');
  const exprs = [...dashboard.matchAll(/"expr": "((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
  t.true(exprs.length >= 20, `the dashboard has its queries (${exprs.length})`);
  const served = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  for (const name of new Set(exprs.flatMap((e) => e.match(/\bvpoolfs_\w+/g) ?? []))) {
    t.true(served.has(name.replace(/_(bucket|count|sum)$/, '')), `the dashboard's ${name} is served`);
  }
});


/** A private mount namespace with an empty /dev: the only way to take /dev/fuse away without root games on the host. */
const canHideDev = spawnSync('unshare', ['-m', 'true']).status === 0;
(canHideDev ? test0 : test0.skip)('missing /dev/fuse: a clear message, non-zero exit, nothing mounted', async (t) => {
  const l = await freshLayout(t);
  const r = await sh(`unshare -m bash -c ${q(`${DETACH_HOST_MOUNTS}\nmount -t tmpfs none /dev && exec node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)}`)}`, { timeoutMs: 30_000 });
  t.not(r.code, 0);
  t.regex(r.stderr, /\/dev\/fuse is not usable \(ENOENT\)/);
  t.false(await isMounted(l.mountpoint));
});

test('one daemon per state directory: a second mount on the same state is refused', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend });
  const other = path.join(l.root, 'other');
  const r = await sh(`node ${q(CLI)} mount ${q(other)} --vpool vp --state ${q(l.state)} --backend ${q(l.backend)}`, { timeoutMs: 30_000 });
  t.not(r.code, 0);
  t.regex(r.stderr, /in use by another vpoolfs daemon \(pid \d+\)/);
  t.false(await isMounted(other));
  t.true(m.alive);
});
