/**
 * The worker thread of a slot reader (slot-readers.ts): for each run of the batch in the job table, one pread
 * of its whole slots into the shared scratch, then every slot checked (sco-format.ts checkSlot: magic,
 * crc32, namespace tag, SCO, slot, address); writes 1 (sound) or 0 (short, unreadable or a slot failed)
 * into the run's result word, then answers with the number of runs. The main thread copies the data out
 * and reads the failed runs again by the careful path, which says what was wrong.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { checkSlot, SLOT_SIZE } from '../formats/sco-format.js';
import { JOB, JOB_WORDS } from './slot-job-table.js';

const { scratch: sab, jobs: jobsSab } = workerData as { scratch: SharedArrayBuffer; jobs: SharedArrayBuffer };
const scratch = Buffer.from(sab);
const jobs = new Float64Array(jobsSab);

parentPort!.on('message', (count: number) => {
  for (let i = 0; i < count; i++) {
    const w = i * JOB_WORDS;
    const fd = jobs[w + JOB.FD];
    const pos = jobs[w + JOB.POS];
    const n = jobs[w + JOB.N];
    const tag = jobs[w + JOB.TAG];
    const sco = jobs[w + JOB.SCO];
    const slot = jobs[w + JOB.SLOT];
    const a = jobs[w + JOB.ADDRESS];
    const at = jobs[w + JOB.AT];
    let ok = 1;
    try {
      if (fs.readSync(fd, scratch, at, n * SLOT_SIZE, pos) !== n * SLOT_SIZE) ok = 0;
    } catch {
      ok = 0; // a descriptor closed meanwhile, an I/O error: the careful path reads it again and reports
    }
    for (let k = 0; ok === 1 && k < n; k++) {
      if (checkSlot(scratch, at + k * SLOT_SIZE, tag, sco, slot + k, a + k) !== null) ok = 0;
    }
    jobs[w + JOB.RESULT] = ok;
  }
  parentPort!.postMessage(count);
});
