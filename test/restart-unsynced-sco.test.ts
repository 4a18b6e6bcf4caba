/**
 * A local restart after a power cut that kept a SCO's record in the open TLog but not all of the SCO's
 * slots (the kernel wrote the TLog's page back first). The record's clusters whose slots are not sound
 * must read as their previous content (DESIGN §4: old or new, nothing else), never as EIO; the TLog is
 * rewritten so that another restart, and a rebuild from the backend after it was uploaded, agree.
 * In-process (helpers/faulty-pool.ts): the SCO file is damaged by hand between a kill and the restart,
 * which is exactly what such a cut leaves (the real thing: powercut-vdisk.test.ts, not deterministic).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { pattern } from './helpers/vpool.js';
import { powerCutRig } from './helpers/faulty-pool.js';
import { SLOT_HEADER, SLOT_SIZE } from '../volume/datapath/formats/sco-format.js';

const CS = 4096;

for (const { where, tlogScos, kept } of [
  { where: 'a closed TLog', tlogScos: 2, kept: 2 },
  { where: 'the open TLog', tlogScos: 4, kept: 2 },
  { where: 'the open TLog, no slot on the disk', tlogScos: 4, kept: 0 },
]) test(`a SCO record in ${where} naming slots that never reached the disk: those clusters keep their old content, no EIO, also after another restart and a rebuild from the backend`, async (t) => {
  const rig = powerCutRig(t, { tlogScos });
  const boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 16 * CS);
  const v = boot.pool.vdisk('/d');
  const id = (v as unknown as { id: string }).id;
  boot.backend.pause(); // nothing uploaded: SCOs 1 and 2 stay local, their records in the journal
  const old = pattern(1, 8 * CS);
  await v.write(0, old); // SCO 1 (8 clusters), closed: its record in the journal
  await v.sync(); // durable
  const newer = pattern(2, 8 * CS);
  await v.write(0, newer); // SCO 2, closed: its record in the journal, never synced
  rig.kill(boot);
  // what the cut left of SCO 2: `kept` slots whole, the next one's header but not its data, nothing after
  const sco = path.join(rig.wcDir, id, 'sco', '00000002');
  const buf = fs.readFileSync(sco);
  t.is(buf.length, 8 * SLOT_SIZE);
  buf.fill(0, kept * SLOT_SIZE + SLOT_HEADER + 100, (kept + 1) * SLOT_SIZE);
  fs.writeFileSync(sco, buf.subarray(0, (kept + 1) * SLOT_SIZE));

  const want = Buffer.concat([newer.subarray(0, kept * CS), old.subarray(kept * CS)]);
  const boot2 = await rig.open();
  boot2.backend.pause();
  t.deepEqual(await boot2.pool.vdisk('/d').read(0, 8 * CS), want, `slots before ${kept} new, the others (not on the disk) old`);
  rig.kill(boot2);

  const boot3 = await rig.open(); // the journal was rewritten: the same again
  const v3 = boot3.pool.vdisk('/d');
  t.deepEqual(await v3.read(0, 8 * CS), want, 'the same after another restart');
  await v3.syncToBackend(); // the uploaded TLog names only sound slots
  await rig.close(boot3);

  fs.rmSync(path.join(rig.wcDir, id), { recursive: true, force: true }); // the host's write cache is gone
  const boot4 = await rig.open();
  t.deepEqual(await boot4.pool.vdisk('/d').read(0, 8 * CS), want, 'the same after a rebuild from the backend');
  await rig.close(boot4);
});
