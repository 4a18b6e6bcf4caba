/**
 * Two routers, one backend (docs/cluster.md), as scenarios that test/claim-routers.test.ts runs on file://
 * and test/s3-claim.test.ts on a real radosgw: real daemons (`vpoolfs mount`), each with its own state
 * directory and mountpoint; the backend is inspected through a BlobStore of the same URL.
 *
 * - refusalAndTakeover: a second router is refused while the first is live, with a message naming it;
 *   after a kill -9 of the first it takes over once the lease has expired (polled: each refused attempt
 *   names the holder); `--force` takes over at once and the router it replaced answers I/O with EIO.
 * - zombie: router A writing, SIGSTOP A, B takes over with --force and writes, SIGCONT A: A ships late
 *   uploads into the backend before its next renewal tells it that it lost the claim; none of them changes
 *   what B serves — read back byte-exact on B, after B restarts, and on a third router that rebuilds
 *   everything from the backend. A's I/O fails and its log says why.
 *
 * Leases are short and configured (`claimLeaseMs` in the config file). VPOOLFS_ZOMBIE_LEASE_MS sets the
 * zombie's lease (default 60 s): B must take over and write within a third of it for A's late uploads
 * to happen (the test says so if they did not).
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBlobStore } from '../../volume/backend/index.js';
import type { BlobStore } from '../../volume/backend/types.js';
import { isMounted, logEntries, MountHandle, ok, q, sh, startMount, tempRoot, type MountOpts } from './mount.js';

interface Layout {
  root: string;
  /** The backend, for looking at what the routers put there. */
  store: BlobStore;
  /** Mount options for router `name` (its own state directory and mountpoint), with `lease` ms. */
  router(name: string, lease: number, extra?: string[]): MountOpts;
}

async function layout(t: ExecutionContext, backend: (root: string) => string): Promise<Layout> {
  const root = await tempRoot(t, 'vpoolfs-claim-');
  const url = backend(root);
  const store = await openBlobStore(url);
  t.teardown(() => store.close());
  return {
    root, store,
    router(name, lease, extra = []) {
      const mountpoint = path.join(root, `${name}-mnt`);
      mkdirSync(mountpoint, { recursive: true });
      const cfg = path.join(root, `${name}-${lease}.json`);
      writeFileSync(cfg, JSON.stringify({ claimLeaseMs: lease, scoMaxAgeMs: 200, scoClusters: 16, tlogScos: 2 }));
      return { mountpoint, state: path.join(root, `${name}-state`), backend: url, extraArgs: ['--vpool', 'pool', '--router', name, '--config', cfg, ...extra] };
    },
  };
}

/** Starts a mount that is expected to be refused; returns its output once it has exited. */
async function refused(opts: MountOpts): Promise<{ code: number | null; log: string }> {
  const m = new MountHandle(opts);
  const { code } = await m.exited;
  return { code, log: m.log };
}

/** Waits until `file`'s vDisk has nothing left to ship (user.vdisk.info). */
async function shipped(t: Parameters<typeof ok>[0], file: string): Promise<void> {
  for (;;) {
    const info = JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(file)}`)) as { dirtyBytes: number; uploadBacklog: { tlogs: number } };
    if (info.dirtyBytes === 0 && info.uploadBacklog.tlogs === 0) return;
    await sleep(100);
  }
}

async function sha(t: Parameters<typeof ok>[0], file: string): Promise<string> {
  return (await ok(t, `sha256sum ${q(file)}`)).split(' ')[0];
}

/** The claim object of the highest epoch in the backend. */
async function currentClaim(store: BlobStore): Promise<{ epoch: number; router: string; renewedAt: number }> {
  const keys = await store.list('pool/claim/');
  return JSON.parse((await store.get(keys[keys.length - 1])).toString()) as { epoch: number; router: string; renewedAt: number };
}

/** The id of the only vDisk in the backend, once there is one. */
async function onlyVdisk(store: BlobStore): Promise<string | undefined> {
  const key = (await store.list('vdisks/'))[0];
  return key?.split('/')[1];
}

const numbers = async (store: BlobStore, prefix: string): Promise<number[]> => (await store.list(prefix)).map((k) => parseInt(k.slice(k.lastIndexOf('/') + 1), 16));

export async function refusalAndTakeover(t: ExecutionContext, backend: (root: string) => string): Promise<void> {
  const L = await layout(t, backend);
  const a = await startMount(t, L.router('ra', 3000));
  const src = path.join(L.root, 'src');
  await ok(t, `head -c 3M /dev/urandom > ${q(src)} && dd if=${q(src)} of=${q(a.p('disk'))} bs=64k conv=fsync status=none`);
  await shipped(t, a.p('disk'));
  const want = await sha(t, src);

  // refused while A is live: the message names the holder, its last renewal and the expiry
  const r1 = await refused(L.router('rb', 3000));
  t.is(r1.code, 1, r1.log);
  t.regex(r1.log, /in use by router 'ra' on host \S+ \(pid \d+, epoch 1\), last renewed \S+Z, claim expires \S+Z/);
  t.regex(r1.log, /--force/);
  t.false(await isMounted(path.join(L.root, 'rb-mnt')));

  // kill -9: the claim stays until it expires; B polls (each refusal names ra) and then takes it
  await a.kill9();
  let refusals = 0;
  let b: MountHandle;
  for (;;) {
    const m = new MountHandle(L.router('rb', 3000));
    try {
      await m.waitReady();
      t.teardown(() => m.stop(30_000).then(() => undefined));
      b = m;
      break;
    } catch {
      await m.exited;
      t.regex(m.log, /in use by router 'ra'/);
      refusals++;
    }
  }
  t.log(`router rb was refused ${refusals} times before ra's claim expired`);
  t.is(logEntries(b.log, /^taking over an expired claim of router 'ra'/).length, 1, b.log);
  t.is(await sha(t, b.p('disk')), want, 'what ra shipped before the kill');
  t.is((await currentClaim(L.store)).router, 'rb');

  // --force: at once, loudly; B finds out at its next renewal and answers I/O with EIO
  const c = await startMount(t, L.router('rc', 3000, ['--force']));
  t.is(logEntries(c.log, /^FORCED TAKEOVER: taking the vPool from a live claim of router 'rb'/).length, 1, c.log);
  t.is(await sha(t, c.p('disk')), want);
  while (logEntries(b.log, /^FENCED: this router lost its claim/).length === 0) await sleep(100);
  t.regex(logEntries(b.log, /^FENCED/)[0].message as string, /router 'rc' .* took the vPool over \(epoch 3 > 2\)/);
  const rd = await sh(`cat ${q(b.p('disk'))} > /dev/null`);
  t.not(rd.code, 0);
  t.regex(rd.stderr, /Input\/output error/);
  const wr = await sh(`dd if=/dev/zero of=${q(b.p('disk'))} bs=4k count=1 conv=notrunc status=none`);
  t.not(wr.code, 0);
  t.is(await sha(t, c.p('disk')), want, 'the fenced router changed nothing');

  // C changes the disk and stops (releasing the claim); B's stop ships nothing (exit 1); B mounts again: its
  // local state is stale, discarded, and every vDisk comes from the backend
  await ok(t, `head -c 128K /dev/urandom | dd of=${q(c.p('disk'))} bs=64k seek=1 conv=notrunc,fsync status=none`);
  const now = await sha(t, c.p('disk'));
  t.is(await c.stop(), 0);
  t.is(await b.stop(), 1);
  t.true(logEntries(b.log, 'vPool closed without shipping: this router had lost its claim on it').length > 0, b.log);
  const b2 = await startMount(t, L.router('rb', 3000));
  t.true(logEntries(b2.log, /^another router served this vPool since this state directory did/).length > 0, b2.log);
  t.is(await sha(t, b2.p('disk')), now, "B serves C's data, not its stale state");
}

export async function zombie(t: ExecutionContext, backend: (root: string) => string): Promise<void> {
  const zombieLease = Number(process.env.VPOOLFS_ZOMBIE_LEASE_MS ?? 60_000);
  const L = await layout(t, backend);
  const a = await startMount(t, L.router('ra', zombieLease));
  const disk = a.p('disk');
  await ok(t, `head -c 2M /dev/urandom > ${q(disk)}`);
  // a writer on A: random 64 KiB writes with fsync, until A's I/O fails
  const writer = spawn('bash', ['-c', `n=0; while dd if=/dev/urandom of=${q(disk)} bs=4k count=16 seek=$(( (RANDOM % 32) * 16 )) conv=notrunc,fsync status=none; do n=$((n+1)); done; echo "writes: $n"`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let writerOut = '';
  writer.stdout.on('data', (d: Buffer) => (writerOut += d.toString()));
  writer.stderr.on('data', (d: Buffer) => (writerOut += d.toString()));
  const writerDone = new Promise<void>((r) => writer.on('exit', () => r()));
  let stopped = false;
  t.teardown(async () => {
    if (stopped) process.kill(a.pid, 'SIGCONT');
    writer.kill('SIGKILL');
  });

  // A ships as it writes; pause it right after a renewal of its claim, so that its next one is a third of
  // the lease away: B's takeover happens in between and A's first backend writes after SIGCONT are not held
  let id: string | undefined;
  while ((id = await onlyVdisk(L.store)) === undefined || (await numbers(L.store, `vdisks/${id}/tlog/`)).length < 3) await sleep(100);
  const first = (await currentClaim(L.store)).renewedAt;
  while ((await currentClaim(L.store)).renewedAt === first) await sleep(50);
  process.kill(a.pid, 'SIGSTOP');
  stopped = true;

  // B takes over and writes; what B serves now is the reference
  const b = await startMount(t, L.router('rb', 3000, ['--force']));
  const fenceKeys = await L.store.list(`vdisks/${id}/fence/`);
  const fence = JSON.parse((await L.store.get(fenceKeys[0])).toString()) as { acceptedTlog: number; firstTlog: number; epoch: number };
  t.is(fence.epoch, 2);
  await ok(t, `head -c 256K /dev/urandom | dd of=${q(b.p('disk'))} bs=64k seek=3 conv=notrunc,fsync status=none`);
  await shipped(t, b.p('disk'));
  const want = await sha(t, b.p('disk'));

  // A resumes: its writer goes on, A ships into the backend until its renewal finds epoch 2
  process.kill(a.pid, 'SIGCONT');
  stopped = false;
  const late = async () => (await numbers(L.store, `vdisks/${id}/tlog/`)).filter((n) => n > fence.acceptedTlog && n < fence.firstTlog);
  while (logEntries(a.log, /^FENCED/).length === 0) await sleep(100);
  await writerDone;
  const lateTlogs = (await late()).length;
  t.log(`late TLogs A uploaded after the takeover: ${lateTlogs}; ${writerOut.trim()}`);
  t.true(lateTlogs > 0, `A uploaded nothing between SIGCONT and its renewal: the scenario needs B to take over within a third of A's lease (${zombieLease} ms, VPOOLFS_ZOMBIE_LEASE_MS)`);
  t.regex(logEntries(a.log, /^FENCED/)[0].message as string, /router 'rb' .* took the vPool over \(epoch 2 > 1\)/);
  t.regex(writerOut, /Input\/output error/, 'the writer on A ends with EIO');
  const rd = await sh(`cat ${q(disk)} > /dev/null`);
  t.regex(rd.stderr, /Input\/output error/);

  // nothing A shipped late changes what B serves: now, after B restarts, after a rebuild from the backend
  t.is(await sha(t, b.p('disk')), want, 'B after A resumed');
  t.is(await b.stop(), 0);
  const b2 = await startMount(t, L.router('rb', 3000));
  t.is(await sha(t, b2.p('disk')), want, 'B after a restart');
  t.is(await b2.stop(), 0);
  const c = await startMount(t, L.router('rc', 3000));
  t.is(await sha(t, c.p('disk')), want, 'a rebuild from the backend');
  t.true(lateTlogsSkipped(c.log, fence.firstTlog), c.log);
  await a.stop(30_000);
}

/**
 * Whether a rebuild (its log `log`) left out the late TLogs of a fenced router (numbers below `firstTlog`, the
 * fence's): listed and ignored (logged), or below the map checkpoint it started from, past the fence — a
 * rebuild from a checkpoint lists only the keys after it (volume/lineage/chain-start.ts), and a checkpoint
 * covering any of them is not believed (test/checkpoint-crash.test.ts).
 */
export function lateTlogsSkipped(log: string, firstTlog: number): boolean {
  if (logEntries(log, 'TLogs uploaded by a fenced router after a takeover are ignored').length > 0) return true;
  const key = logEntries(log, /^vDisk rebuilt from the backend/)[0]?.checkpoint;
  return typeof key === 'string' && parseInt(key.slice(key.lastIndexOf('/') + 1), 16) >= firstTlog;
}
