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
import { budgetFor, nofileLimits } from '../volume/datapath/write-cache/sco-fd-budget.js';
import { WANTED_NOFILE } from '../tools/daemon/nofile.js';

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

test('a mount raises its soft open-file limit to the hard one, and warns when the limit stays low', async (t) => {
  const nofile = new URL('../tools/daemon/nofile.js', import.meta.url).href;
  const budget = new URL('../volume/datapath/write-cache/sco-fd-budget.js', import.meta.url).href;
  const script = `import { checkNofile } from '${nofile}'; import { scoFdBudget, nofileLimits } from '${budget}';
    const warned = [];
    const log = { info: () => {}, warn: (m) => warned.push(m) };
    const soft = checkNofile({ writeCacheBytes: 1 << 30, scoClusters: 1 }, log);
    console.log(JSON.stringify({ soft, limits: nofileLimits(), budget: scoFdBudget.limit, warned }));`;
  const run = (ulimit: string): Promise<{ soft: number; limits: { soft: number; hard: number }; budget: number; warned: string[] }> => new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', `${ulimit} && exec "$0" --input-type=module -e "$1"`, process.execPath, script], { env: { ...process.env, VPOOLFS_SCO_FDS: undefined } },
      (err, stdout, stderr) => (err !== null ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout.trim().split('\n').pop()!))));
  });
  // soft 256 under a hard 4096: raised to 4096 by the process itself, the budget a quarter of it
  const raised = await run('ulimit -S -n 256 && ulimit -H -n 4096');
  t.deepEqual(raised.limits, { soft: 4096, hard: 4096 });
  t.is(raised.budget, 1024);
  t.true(raised.warned.some((m) => /open-file limit .* is low/.test(m)), 'still below 16,384: warned');
  // both at 256: nothing to raise, warned, the budget 64
  const low = await run('ulimit -n 256');
  t.is(low.soft, 256);
  t.is(low.budget, 64);
  t.true(low.warned.some((m) => /open-file limit .* is low/.test(m)));
  // a soft 1024 (a common default) under a hard of 16,384 (or this machine's hard limit, if lower: only root
  // may raise it): raised to the hard one, warned only below 16,384
  const hard = Math.min(nofileLimits()!.hard, WANTED_NOFILE);
  const fine = await run(`ulimit -S -n 1024 && ulimit -H -n ${hard}`);
  t.is(fine.soft, hard);
  t.is(fine.budget, budgetFor(hard));
  t.is(fine.warned.length, hard < WANTED_NOFILE ? 1 : 0);
});
