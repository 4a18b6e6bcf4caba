/**
 * DESIGN §4, power cut, through a real mount: the daemon's state directory is on a loop-device ext4
 * (helpers/powercut.ts), the backend on the normal disk. A writer child (helpers/powercut-writer.ts) runs seeded
 * aligned, unaligned and growing writes with fdatasyncs now and then; at a random moment the state filesystem is
 * cut (nothing unsynced reaches it), the daemon is killed, the filesystem mounted again (journal replay) and the
 * daemon restarted on it. Every write acknowledged before the last completed fsync must read back byte-exact;
 * every other cluster holds its old content or that of a later write, never other bytes, never an error.
 *
 * Rounds: VPOOLFS_POWERCUT_ROUNDS (default 6; the sync-DTL test a third of it), seeds printed, VPOOLFS_SEED=<seed> replays a run.
 * The sync-DTL test promises every acknowledged write (DESIGN §4), with the DTL server on the normal disk.
 * The last test leaves the daemon running after the cut: every write and fsync after it must fail, and
 * `user.vdisk.info` must say why (`fault`).
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sh, q, tempRoot } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import {
  createDisk, markCut, parseAckLog, readAckLog, restart, roundOpts, startPcWriter, verifyDisk, writerExit,
} from './helpers/powercut-vpool.js';
import { rng } from './helpers/ref-disk.js';
import { startMount } from './helpers/mount.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { waitDtl } from './helpers/dtl-mount.js';
import { runSeed } from './helpers/seed.js';

const test = powercutTest({ fuse: true });
const ROUNDS = Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 6);

interface Mode {
  /** Extra mount arguments (a DTL). */
  args?: string[];
  /** Every acknowledged write must survive (sync DTL), not only the fsynced ones. */
  everyAck?: boolean;
}

async function round(t: ExecutionContext, root: string, lfs: LoopFs, seed: number, i: number, mode: Mode = {}): Promise<string[]> {
  const r = rng(seed ^ 0x5bd1e995);
  const io = i % 2 === 1 ? 'direct' : 'plain';
  const runMs = 300 + Math.floor(r() * 3000);
  const opts = await roundOpts(root, lfs, `r${i}`);
  opts.extraArgs = [...(opts.extraArgs ?? []), ...(mode.args ?? [])];
  const m = await startMount(t, opts);
  const file = await createDisk(t, m);
  if (mode.everyAck) await waitDtl(file, (d) => d.state === 'ok_sync', 'ok_sync before the writer starts');
  const ackFile = path.join(root, `r${i}.acks`);
  const w = await startPcWriter(file, seed, io, 'stop', ackFile);
  await sleep(runMs);
  // the writer stops, the marker goes in, then the cut: what the writer logs after the marker may have
  // straddled the cut and does not count as acknowledged (parseAckLog)
  w.child.kill('SIGSTOP');
  markCut(ackFile);
  await lfs.cut();
  await m.kill9();
  w.child.kill('SIGCONT');
  await writerExit(w, 60_000, 'after the daemon was killed');
  await lfs.remount();
  const lines = readAckLog(ackFile);
  const log = parseAckLog(lines, mode.everyAck);
  const where = `round ${i} seed ${seed} (${mode.everyAck ? 'sync DTL, ' : ''}${io} I/O, cut after ${runMs} ms, ${lines.length} ack lines, ${mode.everyAck ? 'acknowledged up to' : 'last fsync covers'} op ${log.synced}, ops up to ${log.last} may have landed)`;
  t.log(where);
  let m2;
  try {
    m2 = await restart(t, opts);
  } catch (err) {
    return [`${where}: the daemon did not come back on the power-cut state: ${(err as Error).message.slice(0, 4000)}`];
  }
  const { problems } = await verifyDisk(m2.p('disk'), seed, log);
  let errors = m2.log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(0, 6);
  await Promise.race([m2.exited, sleep(200)]);
  if (!m2.alive) errors = [`THE DAEMON DIED; its last output:`, ...m2.log.split('\n').slice(-25)];
  await m2.stop();
  // room for the next rounds (a full state disk is another test's business)
  await sh(`rm -rf ${q(lfs.p(`r${i}`))} ${q(opts.backend.slice('file://'.length))}`);
  return problems.map((p) => `${where}: ${p}${errors.length > 0 ? `\n  daemon warnings/errors after the restart:\n  ${errors.join('\n  ')}` : ''}`);
}

test(`power cut under a writer, restart on the state that survived: ${ROUNDS} rounds`, async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root);
  const base = runSeed();
  t.log(`VPOOLFS_SEED=${base}`);
  const problems: string[] = [];
  for (let i = 0; i < ROUNDS; i++) problems.push(...(await round(t, root, lfs, base + i, i)));
  t.deepEqual(problems, [], `VPOOLFS_SEED=${base}: ${problems.length} problems:\n${problems.join('\n')}`);
});

test('sync DTL: every acknowledged write survives a power cut of the router (2 rounds)', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root);
  const server = await startDtlServer(t, path.join(root, 'dtl')); // on the normal disk: only the router loses power
  const base = runSeed();
  t.log(`VPOOLFS_SEED=${base}`);
  const problems: string[] = [];
  const rounds = Math.max(1, Math.ceil(ROUNDS / 3));
  for (let i = 0; i < rounds; i++) {
    problems.push(...(await round(t, root, lfs, base + i, i, { args: ['--dtl', 'sync', '--dtl-server', server.address], everyAck: true })));
  }
  t.deepEqual(problems, [], `VPOOLFS_SEED=${base}: ${problems.length} problems:\n${problems.join('\n')}`);
});

interface Fault {
  code: unknown;
  message: unknown;
  since: unknown;
}

test('the daemon keeps running after the cut: no write or fsync succeeds, user.vdisk.info says why', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root);
  const seed = runSeed() + 1000;
  t.log(`seed ${seed} (VPOOLFS_SEED=${seed - 1000})`);
  const r = rng(seed ^ 0x5bd1e995);
  const opts = await roundOpts(root, lfs, 'vp');
  const m = await startMount(t, opts);
  const file = await createDisk(t, m);
  const ackFile = path.join(root, 'vp.acks');
  const w = await startPcWriter(file, seed, 'plain', 'probe', ackFile);
  await sleep(500 + Math.floor(r() * 2000));

  // stop the writer so that it is between two ops or inside one; the marker and the cut come before it goes on
  w.child.kill('SIGSTOP');
  markCut(ackFile);
  await lfs.cut();
  w.child.kill('SIGCONT');
  await writerExit(w, 120_000, 'after the cut while the daemon kept running');

  const lines = readAckLog(ackFile);
  const at = lines.indexOf('cut');
  const before = lines.slice(0, at);
  const after = lines.slice(at + 1);
  const inFlight = before.length === 0 ? 0 : Number(before[before.length - 1].split(' ')[1]) + 1;
  // the op that was in flight when the writer stopped may have completed before the cut; none after it may
  // (an extra fsync `x` only comes after an error, so after the cut: every one that succeeded is wrong)
  const acked = after.filter((l) => /^x /.test(l) || (/^(w|s) /.test(l) && Number(l.split(' ')[1]) > inFlight));
  // every finding is collected and reported together: one failure must not hide the next
  const problems: string[] = [];
  if (after.filter((l) => /^(w|s|e) /.test(l)).length < 20) problems.push(`the writer tried fewer than 20 ops after the cut: ${after.join(' | ')}`);
  if (acked.length > 0) problems.push(`acknowledgements after the cut (op ${inFlight} was in flight): ${acked.join(' | ')}\n  all lines after the cut: ${after.slice(0, 50).join(' | ')}`);

  const info = await sh(`getfattr -n user.vdisk.info --only-values ${q(file)}`);
  let fault: Fault | null | undefined;
  try {
    fault = (JSON.parse(info.stdout) as { fault?: Fault | null }).fault;
  } catch {
    problems.push(`user.vdisk.info after the cut is not JSON (${info.code}): ${info.stdout} ${info.stderr}`);
  }
  if (fault === undefined || fault === null) problems.push(`user.vdisk.info has no fault after the cut (fault: ${JSON.stringify(fault)}): ${info.stdout.trim()}`);
  else {
    if (typeof fault.code !== 'string') problems.push(`fault.code is not a string: ${JSON.stringify(fault)}`);
    if (typeof fault.message !== 'string' || fault.message.length === 0) problems.push(`fault.message is empty: ${JSON.stringify(fault)}`);
    if (!(typeof fault.since === 'number' || (typeof fault.since === 'string' && !Number.isNaN(Date.parse(fault.since))))) problems.push(`fault.since is not a time: ${JSON.stringify(fault)}`);
  }

  // then the real power loss: kill, remount, restart; the promise holds for the writes before the cut
  await m.kill9();
  await lfs.remount();
  const log = parseAckLog(lines);
  const m2 = await restart(t, opts);
  const { problems: lost } = await verifyDisk(m2.p('disk'), seed, log);
  problems.push(...lost.map((p) => `after the restart (the last fsync before the cut covers op ${log.synced}): ${p}`));
  const info2 = await sh(`getfattr -n user.vdisk.info --only-values ${q(m2.p('disk'))}`);
  const fault2 = (JSON.parse(info2.stdout || '{}') as { fault?: unknown }).fault;
  if (fault2 !== undefined && fault2 !== null) problems.push(`a fault after the restart on a healthy disk: ${info2.stdout.trim()}`);
  t.deepEqual(problems, [], `seed ${seed} (VPOOLFS_SEED=${seed - 1000}):\n${problems.join('\n')}`);
  await m2.stop();
});
