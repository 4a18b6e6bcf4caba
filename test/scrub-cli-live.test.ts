/**
 * `vpoolfs scrub` on a vDisk the guest keeps writing to, through a real mount: the scrub (slowed by a
 * bandwidth budget from the config file's `scrub` key, so that it lasts) must not stop the guest's writes. A
 * scrub run by a setxattr that lasted the whole scrub held the file's inode lock, and every write to that
 * vDisk waited for the scrub's end; the CLI starts it in the background (`user.vdisk.scrub start`) and polls.
 * So: while `user.vdisk.scrubbing` says the scrub is running, a dd with fsync to the vDisk returns, and the
 * scrub is still running afterwards. Then the CLI's --json line parses, its --progress bar went to stderr,
 * `user.vdisk.info` has the last run, and every byte reads as written.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, freshLayout, fuseTest, ok, q, startMount } from './helpers/mount.js';

const test = fuseTest();

test('vpoolfs scrub lets the guest write to the vDisk while it runs; --json and --progress', async (t) => {
  t.timeout(240_000);
  const l = await freshLayout(t);
  const config = path.join(l.root, 'config.json');
  // 0.5 MB/s: the scrub below moves a few MB, so it runs for several seconds whatever the machine's load
  await writeFile(config, JSON.stringify({ schedule: { snapshot: null, retention: null, scrub: null }, scrub: { bandwidthMBps: 0.5, yieldMs: 0 } }));
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--config', config] });
  const cli = (args: string): Promise<string> => ok(t, `node ${q(CLI)} ${args}`, 120_000);
  const disk = m.p('disk');
  const scrubbing = async (): Promise<{ running: boolean }> => JSON.parse(await ok(t, `getfattr -n user.vdisk.scrubbing --only-values ${q(disk)}`)) as { running: boolean };

  // garbage in every SCO: a snapshot, half of the 4 KiB blocks overwritten at random, the snapshot deleted
  await cli(`create ${q(disk)} 8M`);
  await ok(t, `dd if=/dev/urandom of=${q(disk)} bs=1M count=8 conv=notrunc,fsync status=none`);
  await cli(`snapshot create ${q(disk)} s`);
  await ok(t, `fio --name=half --filename=${q(disk)} --size=8M --rw=randwrite --bs=4k --ioengine=psync --direct=1 --io_size=4M --randrepeat=0 --fallocate=none --overwrite=0 --end_fsync=1 --output=/dev/null`, 120_000);
  await cli(`snapshot delete ${q(disk)} s`);
  const copy = path.join(l.root, 'expected');
  await ok(t, `cp ${q(disk)} ${q(copy)}`);

  // the scrub, through the CLI, in the background
  let out = '';
  let err = '';
  const child = spawn(process.execPath, [CLI, 'scrub', disk, '--json', '--progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let seen = false;
  for (let i = 0; i < 600 && !seen; i++) {
    seen = (await scrubbing()).running;
    if (!seen) await sleep(50);
  }
  t.true(seen, 'the scrub started');

  // the guest writes while it runs
  const data = randomBytes(64 * 1024);
  const dataFile = path.join(l.root, 'data');
  await writeFile(dataFile, data);
  await ok(t, `dd if=${q(dataFile)} of=${q(disk)} bs=64k count=1 conv=notrunc,fsync status=none`);
  t.true((await scrubbing()).running, 'the write (and its fsync) returned while the scrub was still running');
  await ok(t, `dd if=${q(dataFile)} of=${q(copy)} bs=64k count=1 conv=notrunc status=none`);

  t.is(await exited, 0, `vpoolfs scrub failed:\n${err}`);
  const lines = out.trim().split('\n');
  t.is(lines.length, 1, `one JSON line on stdout:\n${out}`);
  const rep = JSON.parse(lines[0]) as { outcome: string; swept: { bytes: number }; throttle: { budgetWaitMs: number } };
  t.is(rep.outcome, 'applied');
  t.true(rep.swept.bytes > 0, 'it freed backend space');
  t.true(rep.throttle.budgetWaitMs > 0, 'the budget held it back');
  t.regex(err, /scrub \[.*\] .*vDisks \| disk: /, `the progress bar went to stderr:\n${err}`);
  const info = JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(disk)}`)) as { scrub?: { lastRun?: { outcome: string; freedBytes: number } } };
  t.is(info.scrub?.lastRun?.outcome, 'applied', 'user.vdisk.info has the last run');
  await ok(t, `cmp ${q(disk)} ${q(copy)}`);
  t.pass('every byte reads as written');
});
