/**
 * Model-based power-cut test: seeded random writes (aligned and not, growing the vDisk), discards, resizes, fsyncs
 * and syncs to the backend (some left running in the background), then a power cut at a random point
 * (helpers/faulty-pool.ts: only what was fdatasynced is left), a restart on what is left, and a check
 * against a plain reference (helpers/ref-disk.ts): every cluster holds its content as of the last
 * completed durability point (an fsync, a resize, a sync to the backend) or a content written after it,
 * nothing else; the size is one of the sizes since that point. Several rounds on the same state.
 * VPOOLFS_SEED replays a run; VPOOLFS_DURABLE_ROUNDS sets the rounds (default 6).
 */
import test from 'ava';
import { RefDisk } from './helpers/ref-disk.js';
import { powerCutRig } from './helpers/faulty-pool.js';
import { pattern } from './helpers/vpool.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;
const MAX_CLUSTERS = 48;

function clusterOf(d: RefDisk, c: number): Buffer {
  const out = Buffer.alloc(CS);
  d.read(c * CS, CS).copy(out);
  return out;
}

test('power cuts at random points keep every cluster at its last durable content or a later one', async (t) => {
  const { seed, rand, int: pick } = seeded(t);
  const rounds = Number(process.env.VPOOLFS_DURABLE_ROUNDS ?? 6);
  const rig = powerCutRig(t);
  let boot = await rig.open();
  await boot.pool.createFile('/d', 0o644, 0, 0, 16 * CS);
  let ref = new RefDisk();
  ref.resize(16 * CS);
  let checked = 0;
  for (let round = 0; round < rounds; round++) {
    const v = boot.pool.vdisk('/d');
    // states[k]: the reference after op k of this round (states[0]: at its start, durable: it was checked)
    const states: RefDisk[] = [ref.clone()];
    const trace: string[] = []; // the round's operations, shown when it fails
    let durable = 0;
    const ops = 10 + pick(30);
    for (let k = 1; k <= ops; k++) {
      const r = rand();
      if (r < 0.6) {
        const off = pick(MAX_CLUSTERS * CS - 3 * CS);
        const len = 1 + pick(3 * CS);
        const data = pattern(seed + round * 1000 + k, len);
        await v.write(off, data);
        ref.write(off, data);
        trace.push(`r${round} k${k} write ${off}+${len} size->${ref.size}`);
      } else if (r < 0.66 && ref.size > 0) {
        // a discard: acknowledged like a write (durable at the next durable point), ordered with the writes
        const off = pick(ref.size);
        const len = 1 + pick(Math.min(ref.size - off, 4 * CS));
        await v.discard(off, len);
        ref.discard(off, len);
        trace.push(`r${round} k${k} discard ${off}+${len}`);
      } else if (r < 0.7) {
        const size = pick(MAX_CLUSTERS * CS);
        await v.resize(size);
        ref.resize(size);
        trace.push(`r${round} k${k} resize ${size}`);
        states.push(ref.clone());
        durable = k; // a resize whose call returned is durable, with everything before it
        continue;
      } else if (r < 0.85) {
        await v.sync();
        trace.push(`r${round} k${k} sync`);
        durable = k - 1; // everything acknowledged before the fsync call
      } else {
        const at = k - 1;
        trace.push(`r${round} k${k} syncToBackend start`);
        const shipped = v.syncToBackend().then(() => {
          durable = Math.max(durable, at);
          trace.push(`r${round} k${at + 1} syncToBackend done`);
        });
        if (rand() < 0.5) await shipped;
        else shipped.catch(() => undefined); // left running: the power cut may come in the middle
      }
      states.push(ref.clone());
    }
    trace.push(`r${round} CUT durable=${durable}`);
    rig.cut(boot);
    boot = await rig.open();
    const v2 = boot.pool.vdisk('/d');
    const window = states.slice(durable);
    const sizes = new Set(window.map((s) => s.size));
    if (!sizes.has(v2.size)) t.log(trace.join('\n'));
    t.true(sizes.has(v2.size), `seed ${seed} round ${round}: size ${v2.size} is none of the sizes since the last durable point (${[...sizes].join(', ')})`);
    const got = await v2.read(0, MAX_CLUSTERS * CS);
    const now = new RefDisk();
    now.write(0, got);
    now.resize(v2.size);
    for (let c = 0; c < MAX_CLUSTERS; c++) {
      const g = clusterOf(now, c);
      if (!window.some((s) => clusterOf(s, c).equals(g))) {
        t.log(trace.join('\n'));
        t.fail(`seed ${seed} round ${round}: cluster ${c} holds content from no state since the last durable point (op ${durable} of ${ops})`);
        return;
      }
      checked++;
    }
    ref = now; // go on from what survived
  }
  t.log(`${rounds} rounds, ${checked} clusters checked`);
  await rig.close(boot);
});
