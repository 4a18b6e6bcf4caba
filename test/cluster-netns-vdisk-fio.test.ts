/**
 * Issue 15's proof "Forwarded I/O: fio --verify from B's mount on a vDisk owned by A; `vpoolfs move` in the middle
 * of it: no error, every byte" with ownership per vDisk (docs/cluster.md, "Ownership per vDisk"): three routers
 * each in its own network namespace (helpers/three-routers.ts: etcd and a file:// backend on the bridge, a DTL
 * server per router, ra the vPool's owner, rb and rc followers). The vDisk /vms/x is ra's; fio writes it through
 * rb's mount — first a sequential prefill, verified, then random O_DIRECT writes verified as they go
 * (helpers/fio-running.ts) — and while that runs, `vpoolfs move /vms/x --to rb` (rb serves it: rb's mount writes
 * locally), `--to rc` (back to ra, then to rc: rb's mount reaches it through ra, two hops), `--to ra` (back).
 * fio keeps writing until the test stops it after the last move: it must exit 0, its verify passing; then every
 * block reads back verified through all three mounts and the three mounts read the same bytes.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest, logEntries, ok, q, type MountHandle } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { threeRouters } from './helpers/three-routers.js';
import { explainLogs, moveVDisk } from './helpers/vdisk-cluster.js';
import { fioError, fioKiB, fioPrefill, fioReadVerify, startFioUntil } from './helpers/fio-running.js';

const test = fuseTest();
const bridge = useBridge();

test('three routers in network namespaces: fio --verify through rb\'s mount on ra\'s vDisk while it moves to rb, to rc and back to ra: fio passes, every byte agrees on all three mounts', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a, b, c } = r;
  const mounts: Record<string, MountHandle> = { ra: a, rb: b, rc: c };
  await ok(t, `truncate -s 16M ${q(a.p('vms', 'x'))}`);
  const f = { file: b.p('vms', 'x'), size: '16M', bs: '4k' };

  const pre = await fioPrefill(f);
  t.is(pre.code, 0, `fio prefill through rb:\n${pre.stdout}\n${pre.stderr}`);
  t.is(fioError(pre.stdout), 0);

  const fio = startFioUntil(f, path.join(r.nc.c.root, 'fio-stop'));
  t.teardown(() => fio.kill());
  await sleep(1500);
  const move = async (to: string): Promise<void> => {
    t.true(fio.alive, `fio ended before the move to ${to}:\n${fio.stdout}\n${fio.stderr}`);
    await moveVDisk(t, r.nc.c, a.p('vms', 'x'), to);
    await sleep(1500); // fio goes on against the new server before the next move
  };
  await move('rb');
  t.is(logEntries(b.log, /^MOVE: serving vDisk \/vms\/x of vPool 'pool' here/).length, 1, b.log.slice(-3000));
  await move('rc');
  t.is(logEntries(b.log, /^MOVE: handed vDisk \/vms\/x back to the vPool's owner/).length, 1, b.log.slice(-3000));
  t.is(logEntries(c.log, /^MOVE: serving vDisk \/vms\/x of vPool 'pool' here/).length, 1, c.log.slice(-3000));
  await move('ra');
  t.is(logEntries(c.log, /^MOVE: handed vDisk \/vms\/x back to the vPool's owner/).length, 1, c.log.slice(-3000));
  t.true(fio.alive, `fio ended before it was stopped:\n${fio.stdout}\n${fio.stderr}`);

  const code = await fio.stop();
  t.is(code, 0, `fio through rb:\n${fio.stdout}\n${fio.stderr}`);
  t.is(fioError(fio.stdout), 0, fio.stdout);
  const kib = fioKiB(fio.stdout);
  t.log(`fio through rb across the three moves: ${kib.written} KiB written, ${kib.read} KiB read back and verified`);
  t.true(kib.written > 0 && kib.read > 0, fio.stdout);

  // every block verified through each mount, and the same bytes on all three
  const sums: string[] = [];
  for (const [name, m] of Object.entries(mounts)) {
    const v = await fioReadVerify({ ...f, file: m.p('vms', 'x') });
    t.is(v.code, 0, `fio read-verify through ${name}:\n${v.stdout}\n${v.stderr}`);
    t.is(fioError(v.stdout), 0, `${name}: ${v.stdout}`);
    sums.push(await ok(t, `sha256sum < ${q(m.p('vms', 'x'))}`));
  }
  t.deepEqual(new Set(sums).size, 1, sums.join(''));
  explainLogs(t, mounts);
  for (const m of [b, c, a]) t.is(await m.stop(), 0, m.mountpoint);
});

