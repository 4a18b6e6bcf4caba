/**
 * The zombie with a registry (issue 15, docs/cluster.md), run by test/registry-zombie.test.ts (file://) and
 * test/registry-s3.test.ts (radosgw): router A writes (fsync after each write), is paused (SIGSTOP) while it ships; its registry lease expires; router B is refused (A had unshipped writes and no DTL: the takeover rule), then takes the vPool over with --force through the registry
 * (a new owner tag, the backend claim taken at once) and writes; SIGCONT A. A ships late uploads before it
 * learns it lost the vPool; none changes what B serves — read back on B, after B restarts, and on a third
 * router that rebuilds everything from the backend. A's I/O fails with EIO and its log says why, and its
 * registry session finds the new owner (OWNERSHIP LOST).
 * The backend claim's lease is long (300 s: renewed every 100 s): what fences A is the registry (its session
 * finds rb owning the vPool and has the backend claim renew at once). So that late uploads surely happen, A
 * resumes while etcd is stopped (a router cut off from the registry but not from the backend): it ships until
 * etcd is back; meanwhile B serves on.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBlobStore } from '../../volume/backend/index.js';
import { logEntries, ok, q, sh, startMount } from './mount.js';
import { cluster, refusedMount } from './registry.js';
import { lateTlogsSkipped } from './claim-scenarios.js';

const sha = async (t: ExecutionContext, file: string): Promise<string> => (await ok(t, `sha256sum ${q(file)}`)).split(' ')[0];

export async function registryZombie(t: ExecutionContext, backend?: (root: string) => string): Promise<void> {
  const c = await cluster(t, backend);
  const store = await openBlobStore(c.backend);
  t.teardown(() => store.close());
  const numbers = async (prefix: string): Promise<number[]> => (await store.list(prefix)).map((k) => parseInt(k.slice(k.lastIndexOf('/') + 1), 16));
  const long = { claimLeaseMs: 300_000 };
  const a = await startMount(t, c.router('ra', [], long));
  const disk = a.p('disk');
  await ok(t, `head -c 16M /dev/urandom > ${q(disk)}`);
  // 1 MiB writes (16 SCOs, 8 TLogs each) with fsync: A always has uploads queued
  const writer = spawn('bash', ['-c', `n=0; while dd if=/dev/urandom of=${q(disk)} bs=1M count=1 seek=$(( RANDOM % 16 )) conv=notrunc,fsync status=none; do n=$((n+1)); done; echo "writes: $n"`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let writerOut = '';
  writer.stdout.on('data', (d: Buffer) => (writerOut += d.toString()));
  writer.stderr.on('data', (d: Buffer) => (writerOut += d.toString()));
  const writerDone = new Promise<void>((r) => writer.on('exit', () => r()));
  let stopped = false;
  t.teardown(() => {
    if (stopped) process.kill(a.pid, 'SIGCONT');
    writer.kill('SIGKILL');
  });

  // A ships as it writes; pause it with uploads queued (they go out when it resumes: late uploads)
  let id: string | undefined;
  while ((id = (await store.list('vdisks/'))[0]?.split('/')[1]) === undefined || (await numbers(`vdisks/${id}/tlog/`)).length < 3) await sleep(100);
  const backlog = async () => (JSON.parse(await ok(t, `getfattr -n user.vdisk.info --only-values ${q(disk)}`)) as { uploadBacklog: { tlogs: number } }).uploadBacklog.tlogs;
  while ((await backlog()) < 4) await sleep(20);
  process.kill(a.pid, 'SIGSTOP');
  stopped = true;

  // B: refused while A's registry lease lives, then takes the vPool over and writes; B's data is the reference
  // A has unshipped writes and no DTL: once its lease expired, B is still refused (the takeover rule, not
  // automatic: it may lose A's unshipped writes); the operator forces it (mount --force)
  let refusals = 0;
  for (;; refusals++) {
    const r = await refusedMount(c.router('rb', ['--no-follow'], long));
    t.is(r.code, 1, r.log);
    if (/vPool 'pool' is not taken over automatically from router 'ra'.*\/disk/.test(r.log)) break;
    t.regex(r.log, /vPool 'pool' is owned by router 'ra'/);
  }
  const b = await startMount(t, c.router('rb', ['--no-follow', '--force'], long));
  t.true(logEntries(b.log, /^FORCED TAKEOVER of vPool 'pool' from router 'ra'/).length === 1, b.log);
  const fence = JSON.parse((await store.get((await store.list(`vdisks/${id}/fence/`))[0])).toString()) as { acceptedTlog: number; firstTlog: number };
  await ok(t, `head -c 256K /dev/urandom | dd of=${q(b.p('disk'))} bs=64k seek=3 conv=notrunc,fsync status=none`);
  const want = await sha(t, b.p('disk'));
  const rows = await c.routers();
  t.like(rows.find((r) => r.name === 'ra'), { state: 'expired', vpools: [] });
  t.is(rows.find((r) => r.name === 'rb')?.vpools[0]?.vpool, 'pool');

  // A resumes cut off from the registry (etcd stopped: A cannot learn that rb owns the vPool now, and its
  // backend claim renews only every 100 s): its writer goes on and A ships late uploads into the backend
  await c.etcd.stop();
  process.kill(a.pid, 'SIGCONT');
  stopped = false;
  const late = async () => (await numbers(`vdisks/${id}/tlog/`)).filter((n) => n > fence.acceptedTlog && n < fence.firstTlog).length;
  while ((await late()) < 3) await sleep(100);
  t.is(await sha(t, b.p('disk')), want, 'B while A ships late uploads');
  // etcd back: A's session finds rb owning the vPool, its backend claim renews at once and finds rb's epoch
  await c.etcd.start();
  while (logEntries(a.log, /^FENCED/).length === 0) await sleep(100);
  await writerDone;
  t.log(`rb was refused ${refusals} times; late TLogs A uploaded after the takeover: ${await late()}; ${writerOut.trim()}`);
  t.true(logEntries(a.log, /^OWNERSHIP LOST: vPool 'pool' is now owned by router 'rb'/).length > 0, a.log);
  t.regex(logEntries(a.log, /^FENCED/)[0].message as string, /router 'rb' .* took the vPool over/);
  t.regex(writerOut, /Input\/output error/, 'the writer on A ends with EIO');
  t.regex((await sh(`cat ${q(disk)} > /dev/null`)).stderr, /Input\/output error/);

  // nothing A shipped late changes what B serves: now, after B restarts, after a rebuild from the backend
  t.is(await sha(t, b.p('disk')), want, 'B after A resumed');
  t.is(await b.stop(), 0);
  const b2 = await startMount(t, c.router('rb', [], long));
  t.is(await sha(t, b2.p('disk')), want, 'B after a restart');
  t.is(await b2.stop(), 0);
  const r3 = await startMount(t, c.router('rc', [], long));
  t.is(await sha(t, r3.p('disk')), want, 'a rebuild from the backend');
  t.true(lateTlogsSkipped(r3.log, fence.firstTlog), r3.log);
  t.is(await r3.stop(), 0);
  t.is(await a.stop(30_000), 1, 'the fenced router ships nothing at its stop');
}
