/**
 * fio with --verify=crc32c through a real mount: random and sequential, 4 KiB and 1 MiB, O_DIRECT
 * (libaio, depth 16) and buffered. Then a clean stop (SIGTERM), a mount again on the same state, and
 * fio --verify_only again; then once more with the state directory removed, from the backend alone.
 */
import { rm } from 'node:fs/promises';
import { freshLayout, fuseTest, sh, startMount } from './helpers/mount.js';
import { fioVerifyCommand, type FioJob } from './helpers/fio-verify.js';

const test = fuseTest();

const jobs: FioJob[] = [
  { name: 'rand4k-direct', rw: 'randwrite', bs: '4k', direct: 1, size: '16M' },
  { name: 'rand4k-buffered', rw: 'randwrite', bs: '4k', direct: 0, size: '16M' },
  { name: 'seq4k-direct', rw: 'write', bs: '4k', direct: 1, size: '16M' },
  { name: 'seq4k-buffered', rw: 'write', bs: '4k', direct: 0, size: '16M' },
  { name: 'rand1m-direct', rw: 'randwrite', bs: '1M', direct: 1, size: '64M' },
  { name: 'rand1m-buffered', rw: 'randwrite', bs: '1M', direct: 0, size: '64M' },
  { name: 'seq1m-direct', rw: 'write', bs: '1M', direct: 1, size: '64M' },
  { name: 'seq1m-buffered', rw: 'write', bs: '1M', direct: 0, size: '64M' },
];


test('fio --verify=crc32c writes, then verifies after a clean remount and from the backend alone', async (t) => {
  const l = await freshLayout(t);
  const opts = { mountpoint: l.mountpoint, state: l.state, backend: l.backend };
  const m = await startMount(t, opts);
  for (const job of jobs) {
    const r = await sh(fioVerifyCommand(m.mountpoint, job, false));
    t.is(r.code, 0, `fio ${job.name} write+verify:\n${r.stdout}\n${r.stderr}`);
  }
  t.is(await m.stop(), 0, m.log);

  const m2 = await startMount(t, opts);
  for (const job of jobs) {
    const r = await sh(fioVerifyCommand(m2.mountpoint, job, true));
    t.is(r.code, 0, `fio ${job.name} verify_only after remount:\n${r.stdout}\n${r.stderr}`);
  }
  t.is(await m2.stop(), 0, m2.log);

  await rm(l.state, { recursive: true, force: true });
  const m3 = await startMount(t, opts);
  for (const job of jobs) {
    const r = await sh(fioVerifyCommand(m3.mountpoint, job, true));
    t.is(r.code, 0, `fio ${job.name} verify_only from the backend alone:\n${r.stdout}\n${r.stderr}`);
  }
  t.is(await m3.stop(), 0, m3.log);
});
