/**
 * A daemon restarted while its S3 backend is unreachable, through real mounts (`vpoolfs mount --backend
 * s3://…`, helpers/mount.ts) against a real Ceph radosgw started for this file (helpers/s3-server.ts):
 * - plain and encrypted: data written, the daemon killed (-9), radosgw stopped; the mount with the same state
 *   directory comes up, the acknowledged data reads back, new writes go into the write cache, the upload
 *   backlog shows in user.vdisk.info; radosgw back: the backlog drains to 0 and every byte matches, also
 *   from the backend alone (state directory removed);
 * - encrypted, radosgw down, a local copy of the marker: a wrong key and a missing key are refused;
 * - radosgw down and a fresh state directory: the mount fails with a clear message, nothing mounted.
 * The tests stop radosgw, so they run one at a time.
 */
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { CLI, freshLayout, fuseTest, isMounted, logEntries, ok, q, sh, startMount, type MountHandle } from './helpers/mount.js';
import { useS3Server } from './helpers/s3-server.js';

const test = fuseTest();
const s3 = useS3Server('restart');

interface Info {
  uploadBacklog: { scos: number; tlogs: number };
}

async function info(t: ExecutionContext, m: MountHandle, file: string): Promise<Info> {
  return JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(m.p(file))}`)) as Info;
}

/** Polls user.vdisk.info until `until` holds for it (the test's own timeout bounds the wait). */
async function waitInfo(t: ExecutionContext, m: MountHandle, file: string, until: (i: Info) => boolean): Promise<Info> {
  for (;;) {
    const i = await info(t, m, file);
    if (until(i)) return i;
    await sleep(200);
  }
}

function restartDuringOutage(encrypted: boolean): void {
  const what = encrypted ? 'an encrypted' : 'a plain';
  test.serial(`kill -9, radosgw down, restart with the same state: ${what} vPool mounts, reads, writes into the write cache; back, all drains and matches`, async (t) => {
    const l = await freshLayout(t);
    t.teardown(async () => {
      if (s3.rgwPid() === undefined) await s3.startRgw();
    });
    const keyFile = path.join(l.root, 'key');
    await writeFile(keyFile, `${'5a'.repeat(32)}\n`);
    const config = path.join(l.root, 'config.json');
    await writeFile(config, JSON.stringify({ scoClusters: 256, tlogScos: 2, scoMaxAgeMs: 200 }));
    const keyArgs = encrypted ? ['--encryption-key-file', keyFile] : [];
    const opts = { mountpoint: l.mountpoint, state: l.state, backend: s3.url(encrypted ? 'restart-enc' : 'restart-plain', 'vp'), extraArgs: ['--config', config, ...keyArgs] };
    const src = path.join(l.root, 'data');
    await ok(t, `head -c 12M /dev/urandom > ${q(src)}`);

    const m1 = await startMount(t, opts);
    await ok(t, `dd if=${q(src)} of=${q(m1.p('disk'))} bs=1M count=4 conv=notrunc,fsync status=none && mkdir ${q(m1.p('dir'))}`);
    await m1.kill9();
    await s3.stopRgw();

    if (encrypted) {
      // the local copy of the marker stands in for the backend's: a wrong key or no key is still refused
      const wrongKey = path.join(l.root, 'wrong-key');
      await writeFile(wrongKey, Buffer.alloc(32, 7));
      const base = `node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(opts.backend)} --config ${q(config)}`;
      const wrong = await sh(`${base} --encryption-key-file ${q(wrongKey)}`, { timeoutMs: 120_000 });
      t.not(wrong.code, 0);
      t.regex(wrong.stderr, /wrong encryption key/);
      const missing = await sh(base, { timeoutMs: 120_000 });
      t.not(missing.code, 0);
      t.regex(missing.stderr, /is encrypted .*--encryption-key-file/);
      t.false(await isMounted(l.mountpoint));
    }

    const m2 = await startMount(t, { ...opts, readyMs: 120_000 });
    t.true(logEntries(m2.log, /^backend unreachable at open/).length > 0, m2.log);
    await ok(t, `head -c 4M ${q(m2.p('disk'))} | cmp - <(head -c 4M ${q(src)})`);
    t.is(await ok(t, `stat -c %F ${q(m2.p('dir'))}`), 'directory\n');
    // new writes go into the write cache: a new vDisk, and the old one grown
    await ok(t, `dd if=${q(src)} of=${q(m2.p('disk'))} bs=1M skip=4 seek=4 count=4 conv=notrunc,fsync status=none`);
    await ok(t, `dd if=${q(src)} of=${q(m2.p('new'))} bs=1M skip=8 count=4 conv=fsync status=none`);
    const during = await waitInfo(t, m2, 'disk', (i) => i.uploadBacklog.scos > 0);
    t.true(during.uploadBacklog.scos > 0, JSON.stringify(during));
    t.is(await ok(t, `head -c 8M ${q(m2.p('disk'))} | cmp - <(head -c 8M ${q(src)}) && echo same`), 'same\n');

    await s3.startRgw();
    for (const file of ['disk', 'new']) {
      const after = await waitInfo(t, m2, file, (i) => i.uploadBacklog.scos === 0 && i.uploadBacklog.tlogs === 0);
      t.deepEqual(after.uploadBacklog, { scos: 0, tlogs: 0 }, file);
    }
    await ok(t, `head -c 8M ${q(src)} | cmp - ${q(m2.p('disk'))} && tail -c 4M ${q(src)} | cmp - ${q(m2.p('new'))}`);
    t.is(await m2.stop(), 0, m2.log);

    // from the backend alone
    await rm(l.state, { recursive: true, force: true });
    const m3 = await startMount(t, opts);
    await ok(t, `head -c 8M ${q(src)} | cmp - ${q(m3.p('disk'))} && tail -c 4M ${q(src)} | cmp - ${q(m3.p('new'))}`);
    t.is(await ok(t, `stat -c %F ${q(m3.p('dir'))}`), 'directory\n');
    t.is(await m3.stop(), 0, m3.log);
  });
}

restartDuringOutage(false);
restartDuringOutage(true);

test.serial('radosgw down and a fresh state directory: the mount fails with a clear message, nothing mounted', async (t) => {
  const l = await freshLayout(t);
  t.teardown(async () => {
    if (s3.rgwPid() === undefined) await s3.startRgw();
  });
  await s3.stopRgw();
  for (const key of [false, true]) {
    const keyFile = path.join(l.root, 'key');
    await writeFile(keyFile, `${'5a'.repeat(32)}\n`);
    const r = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(s3.url('restart-fresh', 'vp'))}${key ? ` --encryption-key-file ${q(keyFile)}` : ''}`, { timeoutMs: 120_000 });
    t.not(r.code, 0);
    t.regex(r.stderr, /is unreachable \(.*ECONNREFUSED.*\), and the state directory .* has never been mounted on it: cannot tell whether it is encrypted; mount again once the backend is reachable/);
    t.false(await isMounted(l.mountpoint));
  }
});
