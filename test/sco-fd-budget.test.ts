/**
 * The write cache keeps a bounded number of SCO descriptors open (volume/datapath/write-cache/sco-fd-budget.ts):
 * a real process under `ulimit -n 256` writes 3,000 one-cluster SCOs to a vPool whose backend holds every
 * put until the writes are done (so they are all local and unsynced at once), syncs, ships and reads each
 * back (test/helpers/fd-limit-child.ts). Without the bound the 200-odd descriptors left run out and the
 * write cache faults with EMFILE. VPOOLFS_FD_SCOS sets the SCO count; VPOOLFS_SEED replays.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { seeded } from './helpers/seed.js';

const CHILD = fileURLToPath(new URL('./helpers/fd-limit-child.js', import.meta.url));

test('3,000 local unsynced SCOs under ulimit -n 256: written, synced, shipped and read back', async (t) => {
  const { seed } = seeded(t);
  const scos = Number(process.env.VPOOLFS_FD_SCOS ?? 3000);
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-fds-'));
  t.teardown(() => fs.rmSync(state, { recursive: true, force: true }));
  const out = await new Promise<string>((resolve, reject) => {
    // the soft and hard limits both: the child cannot raise them back
    execFile('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, CHILD, state, String(scos), String(seed)],
      { env: { ...process.env, VPOOLFS_SCO_FDS: process.env.VPOOLFS_TEST_SCO_FDS ?? '' }, maxBuffer: 64 << 20, timeout: 85_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`the child failed: ${err.message}\n${stderr.split('\n').filter((l) => /EMFILE|error|Error/.test(l)).slice(0, 5).join('\n')}`));
        else resolve(stdout);
      });
  });
  const m = /^ok (\d+) (\d+)$/m.exec(out);
  t.not(m, null, out);
  t.log(`SCO descriptors open after the writes: ${m![1]}, dropped to stay within the budget: ${m![2]}`);
  t.true(Number(m![1]) <= 64, 'at most the budget (a quarter of 256)');
  t.true(Number(m![2]) >= scos - 64, 'the others were closed');
});
