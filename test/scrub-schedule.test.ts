/**
 * The nightly scrub schedule (`schedule.scrub`, default "0 2 * * *", applied live with the other
 * schedules): the cron job scrubs every vDisk, a bad spec is INVALID and keeps the old jobs, and the
 * config file accepts the key.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { codeOf, pattern, poolEnv } from './helpers/vpool.js';
import { DEFAULT_SCHEDULE, SnapshotScheduler } from '../volume/snapshots/snapshot-schedule.js';

test('the scrub cron job scrubs every vDisk; a bad spec is INVALID and keeps the old jobs', async (t) => {
  t.is(DEFAULT_SCHEDULE.scrub, '0 2 * * *');
  const env = poolEnv(t);
  const pool = await env.open();
  for (const p of ['/a', '/b']) {
    await pool.createFile(p, 0o644, 0, 0, 256 * 1024);
    for (let i = 0; i < 4; i++) await pool.vdisk(p).write(0, pattern(i, 64 * 1024)); // garbage: overwritten slots
  }
  const sched = new SnapshotScheduler(pool);
  t.teardown(() => sched.stop());
  sched.apply({ snapshot: null, retention: null, scrub: '* * * * * *' }); // every second
  t.is(await codeOf(t, () => sched.apply({ scrub: 'nightly' }), 'apply a bad spec'), 'INVALID');
  const done = (): boolean => ['/a', '/b'].every((p) => pool.scrub.statusAt(p).last !== null);
  for (let i = 0; i < 1200 && !done(); i++) await sleep(50);
  sched.stop();
  await sched.idle();
  t.true(done(), 'both vDisks were scrubbed by the job');
  for (const p of ['/a', '/b']) t.true((await pool.vdisk(p).read(0, 64 * 1024)).equals(pattern(3, 64 * 1024)), `${p} reads the last write`);
});
