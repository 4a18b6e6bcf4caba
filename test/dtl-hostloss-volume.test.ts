/**
 * DESIGN §4, host loss, at the volume layer with real processes: a child opens the vPool with a DTL
 * server (a real process), runs seeded writes, resizes and fsyncs, and reports each acknowledged one; it
 * is SIGKILLed at a random moment and its state directory deleted (the host is lost). The vPool is then
 * opened on another router (a new state directory, same backend and DTL server): it rebuilds from the
 * backend and replays the DTL. What must be there:
 *   sync:  every acknowledged operation;
 *   async: every operation acknowledged before the last completed fsync.
 * Each cluster and the size must equal the reference at some point between that bound and the op in
 * flight (entries shipped after the bound may or may not have made it, in order). Several rounds, each
 * going on from the state the last one recovered.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DtlClient } from '../dtl-client/client.js';
import { dtlProvider } from '../dtl-client/provider.js';
import type { DtlMode } from '../volume/types.js';
import { openVPool } from '../volume/vpool.js';
import { runUntilKilled } from './helpers/ack-log.js';
import { applyCrashOp as apply, crashOp, discardIn, runOp } from './helpers/crash-ops.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { RefDisk } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'dtl-writer.js');

const hash = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** Runs the child until killed `killAfterMs` after it is ready; returns its acks: the last op, and the last completed sync op. */
async function runChild(args: string[], acks: string, killAfterMs: number): Promise<{ last: number; lastSync: number; states: string[]; stderr: string }> {
  const { lines, stderr } = await runUntilKilled(child, args, acks, killAfterMs);
  const first = Number(args[args.length - 1]);
  let last = first - 1;
  let lastSync = first - 1;
  const states: string[] = [];
  for (const l of lines) {
    if (l.startsWith('state ')) states.push(`${l.slice(6)} after ack ${last}`);
    else if (l.startsWith('ack ')) {
      last = Number(l.slice(4));
      if (crashOp(Number(args[5]), last).kind === 'sync') lastSync = last;
    }
  }
  return { last, lastSync, states, stderr };
}

async function hostLossRounds(t: ExecutionContext, mode: DtlMode): Promise<void> {
  const { seed } = seeded(t);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-hostloss-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const backend = path.join(root, 'backend');
  const srv = await startDtlServer(t, path.join(root, 'dtl'));
  const rounds = Number(process.env.VPOOLFS_CRASH_ROUNDS ?? 5);
  const ref = new RefDisk();
  let next = 0;
  let checked = 0;
  let inDtl = 0;
  for (let round = 0; round < rounds; round++) {
    const stateA = path.join(root, `state-a${round}`);
    const killAfter = 100 + Math.floor(Math.random() * 900);
    const { last, lastSync, states, stderr } = await runChild([stateA, backend, srv.address, mode, `router-a${round}`, String(seed), String(next)], path.join(root, `acks-${round}`), killAfter);
    fs.rmSync(stateA, { recursive: true, force: true }); // the host is lost
    // the bound: every op up to `safe` must be there; ops after it up to last+1 may be, in order
    const safe = mode === 'sync' ? last : Math.max(lastSync, next - 1);
    for (let n = next; n <= safe; n++) apply(ref, seed, n);
    const allowed = new Map<number, Set<string>>();
    const sizes = new Set([ref.size]);
    const later = ref.clone();
    for (let n = safe + 1; n <= last + 1; n++) {
      const op = crashOp(seed, n);
      const discard = op.kind === 'discard' ? discardIn(op, later.size) : null;
      apply(later, seed, n);
      sizes.add(later.size);
      if (op.kind === 'sync' || discard?.length === 0) continue;
      const [from, to] = op.kind === 'write' ? [Math.floor(op.offset / CS), Math.floor((op.offset + op.data.length - 1) / CS)]
        : op.kind === 'resize' ? [Math.floor(Math.min(op.size, ref.size) / CS), Math.floor(Math.max(ref.size, later.size, op.size) / CS)]
        : [Math.floor(discard!.offset / CS), Math.floor((discard!.offset + discard!.length - 1) / CS)];
      for (let a = from; a <= to; a++) {
        if (!allowed.has(a)) allowed.set(a, new Set([hash(pad(ref.read(a * CS, CS)))]));
      }
      for (const [a, set] of allowed) set.add(hash(pad(later.read(a * CS, CS))));
    }
    // what the DTL holds for the lost router's vDisk (the test is vacuous if it never holds anything)
    const probe = new DtlClient({ servers: [srv.address] });
    for (const id of fs.readdirSync(path.join(root, 'dtl', 'vd'))) inDtl += (await probe.getScoRange(id)).entries;
    probe.close();
    const stateC = path.join(root, `state-c${round}`);
    const dtl = dtlProvider({ servers: [srv.address], defaultMode: mode, router: `router-c${round}`, retryMs: 200 });
    // the lost router's claim is still live: taken with force, as an operator would (docs/cluster.md)
    const pool = await openVPool({ name: 'hl', stateDir: stateC, backendUrl: `file://${backend}`, routerId: `router-c${round}`, scoClusters: 16, tlogScos: 2, dtl, force: true });
    try {
      const v = pool.vdisk('/d');
      const why = `seed ${seed} round ${round}: safe op ${safe}, last ack ${last}, DTL states ${states.join(', ') || 'ok_sync throughout'}\n${stderr.slice(-2000)}`;
      t.true(sizes.has(v.size), `size ${v.size}, allowed ${[...sizes].join(' ')}; ${why}`);
      const size = Math.max(v.size, ...sizes);
      const all = await v.read(0, size);
      const bad: number[] = [];
      for (let a = 0; a * CS < size; a++) {
        const got = hash(pad(all.subarray(a * CS, a * CS + CS)));
        const ok = allowed.get(a)?.has(got) ?? got === hash(pad(ref.read(a * CS, CS)));
        if (!ok) bad.push(a);
      }
      t.deepEqual(bad.slice(0, 10), [], `${bad.length} clusters lost a protected write; ${why}`);
      checked += safe - next + 1;
      // make the state deterministic again: replaying the ops after `safe` in order converges to the reference
      for (let n = safe + 1; n <= last + 1; n++) {
        const op = crashOp(seed, n);
        if (op.kind !== 'sync') await runOp(v, op);
        apply(ref, seed, n);
      }
      t.is(v.size, ref.size);
    } finally {
      await pool.close();
      fs.rmSync(stateC, { recursive: true, force: true });
    }
    next = last + 2;
  }
  t.log(`${mode}: ${rounds} rounds, ${checked} protected operations checked, ${inDtl} entries in the DTL at the kills`);
  t.true(inDtl > 0, 'the DTL held entries when the host was lost');
  t.true(checked > rounds, 'the writer got work done between kills');
}

function pad(b: Buffer): Buffer {
  if (b.length === CS) return b;
  const out = Buffer.alloc(CS);
  b.copy(out);
  return out;
}

test('sync: host lost mid-write, vPool opened on another router: every acknowledged write is there', (t) => hostLossRounds(t, 'sync'));
test('async: host lost mid-write: every write acknowledged before the last completed fsync is there', (t) => hostLossRounds(t, 'async'));
