/**
 * Automatic snapshots on a real mount: the `schedule` config key is validated at mount time (a bad cron
 * spec refuses the mount, nothing mounted) and applied live when the watched config file changes.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, freshLayout, fuseTest, isMounted, ok, q, sh, startMount } from './helpers/mount.js';

const test = fuseTest();

test('a bad schedule in the config refuses the mount', async (t) => {
  const l = await freshLayout(t);
  const cfg = path.join(l.root, 'c.json');
  await writeFile(cfg, JSON.stringify({ schedule: { snapshot: 'every hour' } }));
  const r = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(l.backend)} --config ${q(cfg)}`, { timeoutMs: 60_000 });
  t.not(r.code, 0);
  t.regex(r.stderr, /schedule\.snapshot: not a cron spec/);
  t.false(await isMounted(l.mountpoint));
  await writeFile(cfg, JSON.stringify({ schedule: { hourly: '0 * * * *' } }));
  const r2 = await sh(`node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(l.backend)} --config ${q(cfg)}`, { timeoutMs: 60_000 });
  t.regex(r2.stderr, /unknown schedule "hourly"/);
});

test('the snapshot schedule applies live from the watched config file', async (t) => {
  const l = await freshLayout(t);
  const cfg = path.join(l.root, 'c.json');
  await writeFile(cfg, JSON.stringify({ schedule: { snapshot: null, retention: null } }));
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: ['--config', cfg] });
  const disk = m.p('disk');
  await ok(t, `truncate -s 1M ${q(disk)}`);
  const autos = async (): Promise<number> =>
    (JSON.parse(await ok(t, `getfattr -n user.vdisk.snapshots --only-values ${q(disk)}`)) as Array<{ automatic: boolean }>).filter((s) => s.automatic).length;
  t.is(await autos(), 0);
  await writeFile(cfg, JSON.stringify({ schedule: { snapshot: '* * * * * *', retention: null } })); // every second
  let n = 0;
  for (let i = 0; i < 400 && n === 0; i++) {
    await sleep(50);
    n = await autos();
  }
  t.true(n >= 1, 'an automatic snapshot appeared after the config change');
  t.regex(m.log, /config: schedule applied/);
  await writeFile(cfg, JSON.stringify({ schedule: { snapshot: null, retention: null } }));
  for (let i = 0; i < 400 && !/config: schedule applied[\s\S]*config: schedule applied/.test(m.log); i++) await sleep(50);
  t.regex(m.log, /config: schedule applied[\s\S]*config: schedule applied/, 'the second change was applied too');
});
