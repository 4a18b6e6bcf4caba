/**
 * A whole vPool on S3 through a real mount (`vpoolfs mount --backend s3://…`, helpers/mount.ts) against a
 * real Ceph radosgw started for this file (helpers/s3-server.ts):
 * - fio --verify=crc32c with --encryption-key-file, a clean stop, then fio --verify_only from S3 alone
 *   (state directory removed); no object in the bucket holds the bytes fio wrote;
 * - the tree, attributes and data come back from S3 alone;
 * - radosgw killed under a writing mount: writes fill the write cache and wait (dd never fails), the
 *   backlog shows in user.vdisk.info and the metrics; back, everything drains and every byte matches;
 * - a wrong or missing key: the mount refuses to start with a clear message, nothing mounted.
 */
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBlobStore } from '../volume/backend/index.js';
import { CLI, freshLayout, fuseTest, isMounted, logEntries, ok, q, sh, startMount } from './helpers/mount.js';
import { fioVerifyCommand, type FioJob } from './helpers/fio-verify.js';
import { useS3Server } from './helpers/s3-server.js';
import { treeComesBackFromBackend } from './helpers/tree-roundtrip.js';

const test = fuseTest();
const s3 = useS3Server('fuse');

const jobs: FioJob[] = [
  { name: 'rand4k-direct', rw: 'randwrite', bs: '4k', direct: 1, size: '8M' },
  { name: 'seq4k-buffered', rw: 'write', bs: '4k', direct: 0, size: '8M' },
  { name: 'rand1m-direct', rw: 'randwrite', bs: '1M', direct: 1, size: '32M' },
  { name: 'seq1m-buffered', rw: 'write', bs: '1M', direct: 0, size: '32M' },
];


test('fio --verify=crc32c on an encrypted S3 vPool, then --verify_only from S3 alone; no plaintext in the bucket', async (t) => {
  const l = await freshLayout(t);
  const keyFile = path.join(l.root, 'key');
  await writeFile(keyFile, `${'3c'.repeat(32)}\n`);
  const url = s3.url('fio', 'vp');
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: url, extraArgs: ['--encryption-key-file', keyFile] };
  const m = await startMount(t, opts);
  for (const job of jobs) {
    const r = await sh(fioVerifyCommand(m.mountpoint, job, false));
    t.is(r.code, 0, `fio ${job.name} write+verify:\n${r.stdout}\n${r.stderr}`);
  }
  // a recognisable plaintext too: fio's own pattern is random-looking
  await ok(t, `yes 'VPOOLFS-PLAINTEXT-CANARY' | head -c 1M > ${q(m.p('canary'))}`);
  t.is(await m.stop(), 0, m.log);

  const raw = await openBlobStore(url);
  const keys = await raw.list('');
  t.true(keys.filter((k) => k.includes('/sco/')).length > 0, keys.join(', '));
  for (const k of keys) t.false((await raw.get(k)).includes('VPOOLFS-PLAINTEXT-CANARY'), `${k} holds plaintext`);
  await raw.close();

  await rm(l.state, { recursive: true, force: true });
  const m2 = await startMount(t, opts);
  for (const job of jobs) {
    const r = await sh(fioVerifyCommand(m2.mountpoint, job, true));
    t.is(r.code, 0, `fio ${job.name} verify_only from S3 alone:\n${r.stdout}\n${r.stderr}`);
  }
  t.is((await ok(t, `head -c 26 ${q(m2.p('canary'))}`)), 'VPOOLFS-PLAINTEXT-CANARY\nV');
  t.is(await m2.stop(), 0, m2.log);

  // wrong key and no key: refused before anything is mounted
  await writeFile(keyFile, Buffer.alloc(32, 1));
  await rm(l.state, { recursive: true, force: true });
  const wrong = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(url)} --encryption-key-file ${q(keyFile)}`, { timeoutMs: 60_000 });
  t.not(wrong.code, 0);
  t.regex(wrong.stderr, /wrong encryption key/);
  const missing = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(url)}`, { timeoutMs: 60_000 });
  t.not(missing.code, 0);
  t.regex(missing.stderr, /is encrypted .*--encryption-key-file/);
  t.false(await isMounted(l.mountpoint));
});

test('state directory removed, S3 kept: the tree, attributes and data come back', async (t) => {
  const l = await freshLayout(t);
  await treeComesBackFromBackend(t, l, s3.url('tree', 'vp'));
});

test.serial('radosgw killed under a writing mount: dd waits, never fails; the backlog shows; back, all drains and matches', async (t) => {
  const l = await freshLayout(t);
  t.teardown(async () => {
    if (s3.rgwPid() === undefined) await s3.startRgw();
  });
  const config = path.join(l.root, 'config.json');
  await writeFile(config, JSON.stringify({ writeCacheBytes: 8 * 2 ** 20, scoClusters: 256, tlogScos: 2, scoMaxAgeMs: 200 }));
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: s3.url('outage', 'vp'), extraArgs: ['--config', config, '--metrics', '127.0.0.1:0'] };
  const m = await startMount(t, opts);
  const src = path.join(l.root, 'data');
  await ok(t, `head -c 40M /dev/urandom > ${q(src)} && dd if=${q(src)} of=${q(m.p('disk'))} bs=1M count=4 conv=notrunc,fsync status=none`);
  await s3.stopRgw();
  const dd = sh(`dd if=${q(src)} of=${q(m.p('disk'))} bs=1M skip=4 seek=4 conv=notrunc,fsync status=none`, { timeoutMs: 600_000 });
  let done = false;
  void dd.then(() => (done = true));
  // wait until the daemon reports data waiting for the backend
  const address = logEntries(m.log, 'metrics listening')[0]?.address as string | undefined;
  t.truthy(address, m.log);
  let info: { uploadBacklog: { scos: number } } = { uploadBacklog: { scos: 0 } };
  let metric = 0;
  while (!done && (info.uploadBacklog.scos === 0 || metric === 0)) {
    await sleep(200);
    const r = await sh(`getfattr -n user.vdisk.info --only-values ${q(m.p('disk'))}`);
    if (r.code === 0) info = JSON.parse(r.stdout) as typeof info;
    const text = await fetch(`http://${address}/metrics`).then((res) => res.text());
    metric = Number(/vpoolfs_upload_backlog_scos\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
  }
  t.false(done, 'dd is still writing (or waiting) while the backend is away');
  t.true(info.uploadBacklog.scos > 0 && metric > 0, `backlog ${JSON.stringify(info.uploadBacklog)}, metric ${metric}`);
  await sleep(2000); // let the write cache fill up and the writes wait
  t.false(done, 'dd waits: 36 MiB do not fit an 8 MiB write cache with nothing uploaded');
  await s3.startRgw();
  const r = await dd;
  t.is(r.code, 0, `dd failed: ${r.stderr}`);
  await ok(t, `cmp ${q(m.p('disk'))} ${q(src)}`);
  t.is(await m.stop(), 0, m.log);

  await rm(l.state, { recursive: true, force: true });
  const m2 = await startMount(t, opts);
  await ok(t, `cmp ${q(m2.p('disk'))} ${q(src)}`);
});
