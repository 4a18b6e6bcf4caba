/**
 * Crash test: a child process runs seeded writes, resizes and syncs on a vDisk and reports each
 * acknowledged one; it gets SIGKILL at a random moment, many rounds on the same state. After each kill the
 * vPool is reopened here (a local restart: journal replay, open-SCO scan) and the vDisk must hold every
 * acknowledged operation: each cluster equals the reference after the last acknowledged op, or after the
 * one in flight when the kill came. The uploader runs all along (tiny SCOs and TLogs, 100 ms age), so kills
 * land in uploads and corks too.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openVPool } from '../volume/vpool.js';
import { runUntilKilled } from './helpers/ack-log.js';
import { applyCrashOp as apply, crashOp, runOp } from './helpers/crash-ops.js';
import { RefDisk } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'crash-writer.js');

/** Runs the child from op `first` until killed after `killAfterMs`; returns the last acknowledged op. */
async function runChild(state: string, backend: string, seed: number, first: number, acks: string, killAfterMs: number): Promise<number> {
  const { lines } = await runUntilKilled(child, [state, backend, String(seed), String(first)], acks, killAfterMs);
  let last = first - 1;
  for (const l of lines) if (l.startsWith('ack ')) last = Number(l.slice(4));
  return last;
}

test('every acknowledged write survives SIGKILL of the writer, many rounds', async (t) => {
  const { seed } = seeded(t);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-crash-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const state = path.join(root, 'state');
  const backend = path.join(root, 'backend');
  const rounds = Number(process.env.VPOOLFS_CRASH_ROUNDS ?? 12);
  const ref = new RefDisk();
  let next = 0;
  let acked = 0;
  for (let round = 0; round < rounds; round++) {
    const killAfter = 50 + Math.floor(Math.random() * 700);
    const last = await runChild(state, backend, seed, next, path.join(root, `acks-${round}`), killAfter);
    acked += last - next + 1;
    for (let n = next; n <= last; n++) apply(ref, seed, n);
    const inFlight = ref.clone();
    apply(inFlight, seed, last + 1);
    const pool = await openVPool({ name: 'crash', stateDir: state, backendUrl: `file://${backend}`, scoClusters: 16, tlogScos: 2 });
    try {
      const v = pool.vdisk('/d');
      const sizeOk = v.size === ref.size || v.size === inFlight.size;
      t.true(sizeOk, `seed ${seed} round ${round}: size ${v.size}, want ${ref.size} (or ${inFlight.size} with op ${last + 1})`);
      const size = Math.max(ref.size, inFlight.size);
      const all = await v.read(0, size);
      let bad = -1;
      for (let off = 0; off < size && bad < 0; off += CS) {
        const got = all.subarray(off, off + CS);
        const a = padTo(ref.read(off, CS), got.length);
        const b = padTo(inFlight.read(off, CS), got.length);
        if (!got.equals(a) && !got.equals(b)) bad = off;
      }
      t.is(bad, -1, `seed ${seed} round ${round}: cluster at ${bad} lost an acknowledged write (last ack ${last})`);
      // make the state deterministic for the next round: the in-flight op, applied again, is idempotent
      await runOp(v, crashOp(seed, last + 1));
      apply(ref, seed, last + 1);
      t.is(v.size, ref.size);
    } finally {
      await pool.close();
    }
    next = last + 2;
  }
  t.log(`${rounds} rounds, ${acked} acknowledged operations checked`);
  t.true(acked > rounds, 'the writer got work done between kills');
});

function padTo(b: Buffer, n: number): Buffer {
  if (b.length === n) return b;
  const out = Buffer.alloc(n);
  b.copy(out, 0, 0, Math.min(n, b.length));
  return out;
}
