/**
 * Automatic snapshots and retention with an injected clock: forty simulated days of snapshots every six
 * hours on a real (volume-level) vPool, retention once a simulated day; the survivors follow the rule
 * (all of the last day, one a day for a week, one a week for a month, none older), sticky and cloned
 * snapshots always survive, and a surviving automatic snapshot still rolls back to the right bytes.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { codeOf, pattern, poolEnv } from './helpers/vpool.js';
import { checkCron, DAY_MS, retentionPlan, SnapshotScheduler } from '../volume/snapshots/snapshot-schedule.js';
import type { SnapshotInfo } from '../volume/types.js';

const HOUR = 3_600_000;
const START = Date.UTC(2026, 0, 5, 0, 0, 0); // a Monday

function auto(name: string, timestamp: number, extra: Partial<SnapshotInfo> = {}): SnapshotInfo {
  return { name, uuid: name, timestamp, sticky: false, automatic: true, consistent: true, inBackend: true, clones: [], ...extra };
}

test('retentionPlan: keeps the last day, the newest of each day for a week, of each week for a month', (t) => {
  const now = START + 60 * DAY_MS + 5 * HOUR;
  const snaps: SnapshotInfo[] = [];
  for (let ts = START; ts <= now; ts += 2 * HOUR) snaps.push(auto(`a${ts}`, ts));
  snaps.push(auto('sticky-old', START + 1000, { sticky: true }), auto('cloned-old', START + 2000, { clones: ['c'] }));
  snaps.sort((a, b) => a.timestamp - b.timestamp);
  const gone = new Set(retentionPlan(snaps, now));
  const kept = snaps.filter((s) => !gone.has(s.name));
  t.true(kept.some((s) => s.name === 'sticky-old') && kept.some((s) => s.name === 'cloned-old'));
  const plain = kept.filter((s) => !s.sticky && s.clones.length === 0);
  for (const s of snaps.filter((x) => now - x.timestamp < DAY_MS)) t.false(gone.has(s.name), `${s.name} is younger than a day`);
  const days = new Map<number, SnapshotInfo[]>();
  const weeks = new Map<number, SnapshotInfo[]>();
  for (const s of plain) {
    const age = now - s.timestamp;
    t.true(age < 30 * DAY_MS, `${s.name} is older than 30 days`);
    const day = Math.floor(s.timestamp / DAY_MS);
    if (age >= DAY_MS && age < 7 * DAY_MS) days.set(day, [...(days.get(day) ?? []), s]);
    if (age >= 7 * DAY_MS) weeks.set(Math.floor((day + 3) / 7), [...(weeks.get(Math.floor((day + 3) / 7)) ?? []), s]);
  }
  for (const [day, l] of days) {
    t.is(l.length, 1, `one snapshot kept for day ${day}`);
    const newest = Math.max(...snaps.filter((s) => Math.floor(s.timestamp / DAY_MS) === day && now - s.timestamp >= DAY_MS && !s.sticky && s.clones.length === 0).map((s) => s.timestamp));
    t.is(l[0].timestamp, newest, 'the newest of its day');
  }
  t.true(days.size >= 6, 'one for each of the days between 1 and 7 days old');
  for (const l of weeks.values()) t.is(l.length, 1);
  t.true(weeks.size >= 3, 'one for each week up to a month');
  t.deepEqual(retentionPlan(kept, now), [], 'applying it again removes nothing');
});

test('forty days of automatic snapshots with an injected clock: the right ones survive, data intact', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  await pool.createFile('/img', 0o644, 0, 0, 1 << 20);
  await pool.snapshots.makeTemplate('/img');
  let now = START;
  const sched = new SnapshotScheduler(pool, () => now);
  const content = new Map<string, Buffer>();
  await pool.vdisk('/d').write(0, pattern(1, 8192));
  await pool.snapshots.create('/d', 'keep-me', { sticky: true, timestamp: now });
  await pool.snapshots.create('/d', 'cloned', { timestamp: now });
  await pool.snapshots.clone('/d', 'cloned', '/c');
  const end = START + 40 * DAY_MS;
  let tick = 0;
  for (now = START + HOUR; now <= end; now += 6 * HOUR, tick++) {
    await pool.vdisk('/d').write((tick % 16) * 4096, pattern(100 + tick, 4096));
    const r = await sched.takeAutomatic();
    t.is(r.failed, 0);
    content.set(new Date(now).toISOString(), await pool.vdisk('/d').read(0, 65536));
    if ((now - START) % DAY_MS === HOUR) await sched.applyRetention(); // once a simulated day
  }
  now = end;
  await sched.applyRetention();
  const list = pool.snapshots.list('/d');
  t.true(list.some((s) => s.name === 'keep-me'), 'the sticky snapshot survives');
  t.true(list.some((s) => s.name === 'cloned'), 'the cloned snapshot survives');
  const autos = list.filter((s) => s.automatic);
  t.true(autos.every((s) => end - s.timestamp < 30 * DAY_MS), 'nothing automatic older than 30 days');
  t.is(autos.filter((s) => end - s.timestamp < DAY_MS).length, 4, 'all four of the last day');
  const perDay = new Map<number, number>();
  for (const s of autos) if (end - s.timestamp >= DAY_MS && end - s.timestamp < 7 * DAY_MS) perDay.set(Math.floor(s.timestamp / DAY_MS), (perDay.get(Math.floor(s.timestamp / DAY_MS)) ?? 0) + 1);
  t.true([...perDay.values()].every((n) => n === 1) && perDay.size >= 6, `one a day for a week: ${JSON.stringify([...perDay])}`);
  t.deepEqual(retentionPlan(list, end), [], 'retention was applied');
  t.is(pool.snapshots.list('/img').length, 1, 'templates get no automatic snapshots');
  const cSnaps = pool.snapshots.list('/c');
  t.true(cSnaps.length > 4 && cSnaps.every((s) => s.automatic), 'the clone gets automatic snapshots too');
  t.deepEqual(retentionPlan(cSnaps, end), [], 'and retention');
  // the oldest surviving automatic snapshot still holds its bytes
  const oldest = autos[0];
  await pool.snapshots.rollback('/d', oldest.name);
  t.true((await pool.vdisk('/d').read(0, 65536)).equals(content.get(new Date(oldest.timestamp).toISOString())!));
});

test('the cron jobs fire (node-schedule), bad specs are INVALID and keep the old jobs', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 4096);
  const sched = new SnapshotScheduler(pool);
  t.teardown(() => sched.stop());
  t.is(await codeOf(t, () => checkCron('every hour', 'schedule.snapshot'), 'bad spec'), 'INVALID');
  t.is(await codeOf(t, () => checkCron(42, 'schedule.snapshot'), 'a number'), 'INVALID');
  t.is(checkCron(null, 'x'), null);
  t.is(checkCron('off', 'x'), null);
  sched.apply({ snapshot: '* * * * * *', retention: null }); // every second
  t.is(await codeOf(t, () => sched.apply({ snapshot: 'nonsense' }), 'apply a bad spec'), 'INVALID');
  for (let i = 0; i < 600 && !pool.snapshots.list('/d').some((s) => s.automatic); i++) await sleep(50);
  sched.stop();
  await sched.idle();
  const autos = pool.snapshots.list('/d').filter((s) => s.automatic);
  t.true(autos.length >= 1, 'an automatic snapshot was taken by the job');
  t.regex(autos[0].name, /^auto-\d{8}T\d{6}Z$/);
});
