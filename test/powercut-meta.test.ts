/**
 * DESIGN §4, power cut during a management call, through a real mount (state on a loop-device ext4,
 * helpers/powercut.ts; backend on the normal disk). For each of snapshot, rollback, clone, resize (grow and
 * shrink) and a clean stop, the cut lands at a random moment during the call (or just after it); then kill -9,
 * remount, restart as after a reboot. A call that returned must be there; every vDisk reads as before the call
 * or after it, whole — never a mix, never an error.
 *
 * The vDisk: 4 MiB; A0 = 2 MiB of data fsynced, snapshot s0, then A1 = 2 more MiB over [1 MiB, 3 MiB) fsynced.
 * Rounds per call: VPOOLFS_POWERCUT_ROUNDS (default 1, resizes 3); seeds printed, VPOOLFS_SEED replays.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readAckLog } from './helpers/ack-log.js';
import { ok, q, sh, startMount, tempRoot, type MountHandle } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import { markCut, restart, roundOpts } from './helpers/powercut-vpool.js';
import { pattern, RefDisk, rng } from './helpers/ref-disk.js';
import { runSeed } from './helpers/seed.js';

const test = powercutTest({ fuse: true });
const ROUNDS = Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 1);
const MiB = 2 ** 20;
const SIZE = 4 * MiB;

/** The tests of this file one after the other (each mounts a vPool on its own loop fs: in parallel they would
 * only fight over two cores). */
let chain: Promise<unknown> = Promise.resolve();
function serial<T>(fn: () => Promise<T>): Promise<T> {
  const p = chain.then(fn);
  chain = p.catch(() => undefined);
  return p;
}

/** Writes `data` at `offset` of `file` from a child process (dd), with an fsync at the end unless `sync` is false. */
async function put(t: ExecutionContext, root: string, file: string, offset: number, data: Buffer, sync = true): Promise<void> {
  const src = path.join(root, 'put.bin');
  await writeFile(src, data);
  await ok(t, `dd if=${q(src)} of=${q(file)} bs=64K seek=${offset} oflag=seek_bytes conv=notrunc${sync ? ',fsync' : ''} status=none`);
}

async function snapshotNames(file: string): Promise<string[] | string> {
  const r = await sh(`getfattr -n user.vdisk.snapshots --only-values ${q(file)}`);
  if (r.code !== 0) return `getfattr failed: ${r.stderr.trim()}`;
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((s) => s.name);
}

/** Which of the allowed states `got` is ('' if none), by name. */
function whichState(got: Buffer, states: Record<string, Buffer>): string {
  for (const [name, b] of Object.entries(states)) if (b.equals(got)) return name;
  return '';
}

function describe(got: Buffer, states: Record<string, Buffer>): string {
  const parts = Object.entries(states).map(([name, b]) => {
    if (b.length !== got.length) return `${name}: size ${b.length} (got ${got.length})`;
    let diff = 0;
    let first = -1;
    for (let a = 0; a * 4096 < b.length; a++) {
      if (!b.subarray(a * 4096, (a + 1) * 4096).equals(got.subarray(a * 4096, (a + 1) * 4096))) {
        diff++;
        if (first < 0) first = a;
      }
    }
    return `${name}: ${diff} clusters differ, first cluster ${first}`;
  });
  return `a mix or other bytes (${parts.join('; ')})`;
}

interface Call {
  kind: string;
  /** The shell command of the call (run against the mount in a child process). */
  cmd: (m: MountHandle) => string;
  /** How long the call usually takes, to spread the cut over it (ms). */
  spreadMs: number;
}

/**
 * One round: the vPool prepared with A0, s0 and A1, then `call` runs while the cut lands; afterwards
 * `check(m2, returned)` says what is wrong.
 */
async function round(t: ExecutionContext, seed: number, call: Call,
  check: (m2: MountHandle, returned: boolean, states: { a0: Buffer; a1: Buffer }) => Promise<string[]>): Promise<string[]> {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 512);
  const r = rng(seed);
  const opts = await roundOpts(root, lfs, 'vp');
  const m = await startMount(t, opts);
  const file = m.p('disk');
  await ok(t, `truncate -s ${SIZE} ${q(file)}`);
  const ref = new RefDisk();
  ref.resize(SIZE);
  const d0 = pattern(seed, 0, 2 * MiB);
  await put(t, root, file, 0, d0);
  ref.write(0, d0);
  const a0 = ref.read(0, SIZE);
  await ok(t, `setfattr -n user.vdisk.snapshot -v s0 ${q(file)}`);
  const d1 = pattern(seed, 1, 2 * MiB);
  await put(t, root, file, MiB, d1);
  ref.write(MiB, d1);
  const a1 = ref.read(0, SIZE);

  const acks = path.join(root, 'call.acks');
  const cutAfter = Math.floor(r() * call.spreadMs);
  const child = spawn('bash', ['-c', `${call.cmd(m)}; echo "rc $?" >> ${q(acks)}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await sleep(cutAfter);
  markCut(acks); // the call returned before the cut only if its `rc 0` is logged before this marker
  await lfs.cut();
  await m.kill9();
  await done;
  const rc = readAckLog(acks)[0] ?? 'rc none';
  const returned = rc === 'rc 0';
  await lfs.remount();
  const where = `${call.kind}: seed ${seed}, cut ${cutAfter} ms after the call started, the call ${returned ? 'returned' : `had not returned (${rc}) ${stderr.trim().slice(0, 200)}`}`;
  t.log(where);
  let m2: MountHandle;
  try {
    m2 = await restart(t, opts);
  } catch (err) {
    return [`${where}: the daemon did not come back: ${(err as Error).message.slice(0, 3000)}`];
  }
  const problems = await check(m2, returned, { a0, a1 });
  await m2.stop();
  return problems.map((p) => `${where}: ${p}`);
}

/** The content of `file` must be one of `states` (by name); returns the problems. */
async function expectOneOf(file: string, states: Record<string, Buffer>, what: string): Promise<{ problems: string[]; state: string }> {
  let got: Buffer;
  try {
    got = await readFile(file);
  } catch (err) {
    return { problems: [`${what}: reading it failed: ${(err as Error).message}`], state: '' };
  }
  const state = whichState(got, states);
  return { problems: state === '' ? [`${what}: ${describe(got, states)}`] : [], state };
}

/** Each cluster of `file` must hold its content in `old` or in `now`; the size must be theirs. */
async function expectPerCluster(file: string, old: Buffer, now: Buffer): Promise<{ problems: string[] }> {
  let got: Buffer;
  try {
    got = await readFile(file);
  } catch (err) {
    return { problems: [`the vDisk: reading it failed: ${(err as Error).message}`] };
  }
  if (got.length !== now.length) return { problems: [`the vDisk: size ${got.length}, expected ${now.length}`] };
  const bad: number[] = [];
  for (let a = 0; a * 4096 < got.length; a++) {
    const c = got.subarray(a * 4096, (a + 1) * 4096);
    if (!c.equals(old.subarray(a * 4096, (a + 1) * 4096)) && !c.equals(now.subarray(a * 4096, (a + 1) * 4096))) bad.push(a);
  }
  return { problems: bad.length === 0 ? [] : [`the vDisk: ${bad.length} clusters hold neither their fsynced nor their later content: ${bad.slice(0, 10).join(' ')}`] };
}

async function rounds(t: ExecutionContext, kind: string, body: (seed: number) => Promise<string[]>, n = ROUNDS): Promise<void> {
  await serial(async () => {
    const base = runSeed();
    t.log(`VPOOLFS_SEED=${base}`);
    const problems: string[] = [];
    for (let i = 0; i < n; i++) problems.push(...(await body(base + i)));
    t.deepEqual(problems, [], `${kind}, VPOOLFS_SEED=${base}:\n${problems.join('\n')}`);
  });
}

test('power cut during a snapshot', async (t) => {
  await rounds(t, 'snapshot', (seed) => round(t, seed, { kind: 'snapshot', spreadMs: 40, cmd: (m) => `setfattr -n user.vdisk.snapshot -v s1 ${q(m.p('disk'))}` },
    async (m2, returned, { a1 }) => {
      const problems = (await expectOneOf(m2.p('disk'), { A1: a1 }, 'the vDisk')).problems;
      const names = await snapshotNames(m2.p('disk'));
      if (typeof names === 'string') problems.push(names);
      else {
        if (!names.includes('s0')) problems.push(`snapshot s0 (taken before) is gone: ${names.join(',')}`);
        if (returned && !names.includes('s1')) problems.push(`snapshot s1 returned but is gone: [${names.join(',')}]`);
        if (names.includes('s1')) {
          // a snapshot that is there must read as the disk it was taken of
          const c = await sh(`setfattr -n user.vdisk.clone -v s1:check ${q(m2.p('disk'))}`);
          if (c.code !== 0) problems.push(`cloning s1 after the restart failed: ${c.stderr.trim()}`);
          else problems.push(...(await expectOneOf(m2.p('check'), { A1: a1 }, 'a clone of s1')).problems);
        }
      }
      return problems;
    }));
});

test('power cut during a rollback', async (t) => {
  await rounds(t, 'rollback', (seed) => round(t, seed, { kind: 'rollback', spreadMs: 200, cmd: (m) => `setfattr -n user.vdisk.rollback -v s0 ${q(m.p('disk'))}` },
    async (m2, returned, { a0, a1 }) => {
      const { problems, state } = await expectOneOf(m2.p('disk'), returned ? { A0: a0 } : { A0: a0, A1: a1 }, `the vDisk (${returned ? 'rolled back: A0' : 'A0 or A1'})`);
      if (returned && state !== 'A0') problems.push('the rollback returned but the vDisk is not as of s0');
      const names = await snapshotNames(m2.p('disk'));
      if (typeof names === 'string') problems.push(names);
      else if (!names.includes('s0')) problems.push(`snapshot s0 is gone: [${names.join(',')}]`);
      return problems;
    }));
});

test('power cut during a clone', async (t) => {
  await rounds(t, 'clone', (seed) => round(t, seed, { kind: 'clone', spreadMs: 600, cmd: (m) => `setfattr -n user.vdisk.clone -v s0:copy ${q(m.p('disk'))}` },
    async (m2, returned, { a0, a1 }) => {
      const problems = (await expectOneOf(m2.p('disk'), { A1: a1 }, 'the parent')).problems;
      const exists = (await sh(`test -e ${q(m2.p('copy'))}`)).code === 0;
      if (returned && !exists) problems.push('the clone returned but /copy is gone');
      if (exists) problems.push(...(await expectOneOf(m2.p('copy'), { A0: a0 }, 'the clone /copy (as of s0)')).problems);
      return problems;
    }));
});

for (const [kind, size] of [['grow', SIZE + 3 * MiB + 123], ['shrink', MiB + 1000]] as const) {
  test(`power cut during a resize (${kind})`, async (t) => {
    await rounds(t, `resize ${kind}`, (seed) => round(t, seed, { kind: `resize ${kind}`, spreadMs: 25, cmd: (m) => `truncate -s ${size} ${q(m.p('disk'))}` },
      async (m2, returned, { a1 }) => {
        const after = Buffer.alloc(size);
        a1.copy(after, 0, 0, Math.min(size, a1.length));
        const { problems, state } = await expectOneOf(m2.p('disk'), returned ? { after } : { before: a1, after }, `the vDisk (${returned ? 'resized' : 'before or after'})`);
        if (returned && state !== 'after') problems.push(`the resize to ${size} returned but the vDisk is not resized`);
        return problems;
      }), Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 3)); // a resize round is short: 3 by default
  });
}

test('power cut during a clean stop (SIGTERM)', async (t) => {
  await serial(async () => {
    const base = runSeed();
    t.log(`VPOOLFS_SEED=${base}`);
    const problems: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const seed = base + i;
      const root = await tempRoot(t, 'vpoolfs-pc-');
      const lfs = await LoopFs.create(t, root, 'lfs', 512);
      const opts = await roundOpts(root, lfs, 'vp');
      const m = await startMount(t, opts);
      const file = m.p('disk');
      await ok(t, `truncate -s ${SIZE} ${q(file)}`);
      const d0 = pattern(seed, 0, 2 * MiB);
      await put(t, root, file, 0, d0);
      const d1 = pattern(seed, 1, 2 * MiB);
      await put(t, root, file, MiB, d1, false); // acknowledged, never fsynced: only a clean stop keeps it
      const ref = new RefDisk();
      ref.resize(SIZE);
      ref.write(0, d0);
      const synced = ref.read(0, SIZE);
      ref.write(MiB, d1);
      const all = ref.read(0, SIZE);
      const cutAfter = Math.floor(rng(seed)() * 400);
      m.child.kill('SIGTERM');
      await sleep(cutAfter);
      const stopped = !m.alive ? await m.exited : null;
      await lfs.cut();
      await m.kill9();
      await sh(`umount -l ${q(opts.mountpoint)} 2>/dev/null; true`);
      await lfs.remount();
      const clean = stopped !== null && stopped.code === 0;
      const where = `clean stop: seed ${seed}, cut ${cutAfter} ms after SIGTERM, the daemon had ${clean ? 'exited 0' : stopped === null ? 'not exited yet' : `exited ${JSON.stringify(stopped)}`}`;
      t.log(where);
      let m2: MountHandle;
      try {
        m2 = await restart(t, opts);
      } catch (err) {
        problems.push(`${where}: the daemon did not come back: ${(err as Error).message.slice(0, 3000)}`);
        continue;
      }
      // not stopped: the unsynced writes may be there or not, cluster by cluster (old or new content)
      const { problems: p } = clean
        ? await expectOneOf(m2.p('disk'), { all }, 'the vDisk (every acknowledged write)')
        : await expectPerCluster(m2.p('disk'), synced, all);
      problems.push(...p.map((x) => `${where}: ${x}`));
      await m2.stop();
    }
    t.deepEqual(problems, [], `clean stop, VPOOLFS_SEED=${base}:\n${problems.join('\n')}`);
  });
});
