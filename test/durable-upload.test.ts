/**
 * What goes to the backend must be on the local disk first: an object uploaded from the page cache and
 * then lost locally in a power cut lets the local restart number new SCOs and TLogs from what is left,
 * reusing numbers whose objects the backend already holds with other content.
 */
import test from 'ava';
import path from 'node:path';
import { pattern } from './helpers/vpool.js';
import { until } from './helpers/until.js';
import { powerCutRig } from './helpers/faulty-pool.js';

const CS = 4096;

test('every SCO and TLog put to the backend was fdatasynced locally first', async (t) => {
  const rig = powerCutRig(t);
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  const bad: string[] = [];
  let checked = 0;
  rig.puts = (key, data) => {
    const m = /^vdisks\/([^/]+)\/(sco|tlog)\/([0-9a-f]{8})$/.exec(key);
    if (m === null) return;
    checked++;
    const local = path.join(rig.wcDir, m[1], m[2], m[3]);
    let synced: Buffer | undefined;
    try {
      synced = boot.io.syncedContent(local);
    } catch {
      synced = undefined; // no such local file
    }
    if (synced === undefined || !synced.equals(Buffer.from(data))) bad.push(key);
  };
  for (let i = 0; i < 5; i++) {
    await v.write(i * 3 * CS, pattern(i, 3 * CS));
    await v.syncToBackend();
  }
  t.true(checked >= 10, `SCOs and TLogs were uploaded (${checked})`);
  t.deepEqual(bad, [], 'objects uploaded before they were on the local disk');
  await rig.close(boot);
});

test('after a power cut between upload and cork, no SCO or TLog number is reused for other content', async (t) => {
  const rig = powerCutRig(t);
  const first = new Map<string, Buffer>();
  const reused: string[] = [];
  rig.puts = (key, data) => {
    if (!/\/(sco|tlog)\/[0-9a-f]{8}$/.test(key)) return;
    const before = first.get(key);
    if (before === undefined) first.set(key, Buffer.from(data));
    else if (!before.equals(Buffer.from(data))) reused.push(key);
  };
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 1 << 20);
  const v = boot.pool.vdisk('/d');
  await v.write(0, pattern(1, 2 * CS));
  boot.io.holdSyncs(); // every fdatasync waits: the cut comes before any
  void v.syncToBackend();
  await until('TLog 1 is uploaded, or an fdatasync waits', () => [...first.keys()].some((k) => k.includes('/tlog/')) || boot.io.held > 0);
  await new Promise((r) => setTimeout(r, 200)); // let what can go on go on: the upload, the cork up to its fdatasync
  rig.cut(boot);
  const boot2 = await rig.open();
  const v2 = boot2.pool.vdisk('/d');
  await v2.write(8 * CS, pattern(2, 2 * CS));
  await v2.syncToBackend();
  t.deepEqual(reused, [], 'backend objects overwritten with other content under the same number');
  await rig.close(boot2);
});
