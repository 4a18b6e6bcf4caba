/**
 * Issue 15's proof with three routers (test/cluster-netns-*.test.ts): routers A, B and C each in a network
 * namespace of its own on one bridge (helpers/netns.ts, helpers/netns-cluster.ts), one etcd and one backend,
 * a DTL server in each router's namespace. A owns the vPool (the first to mount), B and C follow it; A and B
 * share failure domain `rack1`, C is in `rack2`. Every router's DTL goes to the other routers' servers (A: B's,
 * then C's), so a dead or cut-off A leaves its DTL copy on a live host.
 *
 * `takeoverAfter(fault)`: a writer on A's own mount (sync DTL, in `ok_sync`), then the fault (kill -9, the
 * network cut, SIGSTOP); B or C takes the vPool over in place and the other follows it. Asserted: exactly one
 * took it, the other follows it; a taker in A's failure domain (B) deferred first (C, in another one, was a
 * live follower: the code guarantees the deferral, not who wins — docs/cluster.md, "Failure domains"); every
 * write acknowledged on A when the fault was done reads back through the new owner and through the other
 * follower (after a network cut A may go on acknowledging writes with its DTL `degraded`: those are not
 * protected, and not checked). The time from the fault to the new owner serving is printed, not asserted. The
 * writer is left running for the caller to stop (a writer blocked on a paused A can only go once A resumes).
 *
 * `stoppedDelegate()`: the start of the delegate's zombie tests — /vms/disk delegated to B under a writer, B
 * SIGSTOP'ed, A takes the vDisk back.
 * `resumeUntilFenced(zombie)`: the end of the zombie tests (a router SIGSTOP'ed under its writer, what it served
 * taken over meanwhile): SIGCONT, until it is fenced, its writer stopped; the writes it acknowledged late and those
 * of them the new owner lacks.
 */
import type { ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { logEntries, ok, q, startMount, type MountHandle } from './mount.js';
import type { Bridge } from './netns.js';
import { netCluster, type NetCluster } from './netns-cluster.js';
import { badBlocks, startWriter, waitDtl, type Writer } from './dtl-mount.js';
import { until } from './until.js';
import { recordedSync } from './registry.js';
import { moveVDisk } from './vdisk-cluster.js';

export interface ThreeRouters {
  nc: NetCluster;
  a: MountHandle;
  b: MountHandle;
  c: MountHandle;
}

/** Failure domain of each router. */
export const DOMAINS: Record<string, string> = { ra: 'rack1', rb: 'rack1', rc: 'rack2' };

/** Mounts A (owner), then B and C (followers) on `backend` (default file://); `/vms/disk` (128 MiB) made on A and in `ok_sync`. */
export async function threeRouters(t: ExecutionContext, bridge: Bridge, backend?: string): Promise<ThreeRouters> {
  // no backend given: file://, under the cluster's temp directory
  const nc = await netCluster(t, bridge, ['ra', 'rb', 'rc'], { dtl: 'routers', backendOf: backend === undefined ? undefined : () => backend });
  const dtl = (name: string) => nc.routers[name]!.dtl!.address;
  const others = (name: string) => ['rb', 'rc', 'ra'].filter((r) => r !== name).map(dtl);
  const mount = (name: string) => startMount(t, nc.mount(name, { dtlServers: others(name), failureDomain: DOMAINS[name] }));
  const a = await mount('ra');
  const [b, c] = await Promise.all([mount('rb'), mount('rc')]);
  for (const m of [b, c]) t.is(logEntries(m.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, m.log);
  await ok(t, `mkdir -p ${q(a.p('vms'))} && truncate -s 128M ${q(a.p('vms', 'disk'))}`);
  await waitDtl(a.p('vms', 'disk'), (d) => d.state === 'ok_sync', 'ok_sync');
  return { nc, a, b, c };
}

export interface Takeover {
  taker: MountHandle;
  other: MountHandle;
  /** The writer on A (still running: the caller stops it). */
  w: Writer;
  /** The writes checked: acknowledged on A up to the fault. */
  checked: number[];
  ms: number;
}

const TOOK = /^took vPool 'pool' over from router 'ra'/;

/** A writer on A's mount, `fault()` once it has a few hundred writes acknowledged; then the takeover as above. */
export async function takeoverAfter(t: ExecutionContext, r: ThreeRouters, what: string, fault: () => Promise<void>): Promise<Takeover> {
  const { a, b } = r;
  const w = startWriter(a.p('vms', 'disk'), 0, 64);
  await w.waitFor(200 + Math.floor(Math.random() * 300));
  const faultAt = Date.now();
  await fault();
  const ackedAtFault = w.acked.slice();
  const { taker, other, tn, on } = await waitTakeover(t, r, what);
  const ms = Date.parse(String(logEntries(taker.log, TOOK)[0]!.timestamp)) - faultAt;
  const deferred = logEntries(b.log, /^deferring the takeover/);
  const opened = Date.parse(String(logEntries(taker.log, TOOK)[0]!.timestamp)) - Date.parse(String(logEntries(taker.log, /^TAKEOVER/)[0]?.timestamp));
  t.log(`${tn} (${DOMAINS[tn]}) serves the vPool ${ms} ms after ${what} of ra (${opened} ms of it opening the vPool after its TAKEOVER decision; ra in ${DOMAINS.ra}, registry lease 2 s); rb ${deferred.length > 0 ? 'deferred to rc' : 'did not defer (rc took it before rb noticed the death)'}; ${ackedAtFault.length} writes acknowledged on ra before`);
  t.is(logEntries(other.log, /^TAKEOVER/).length, 0, `${on} took nothing:\n${other.log.slice(-3000)}`);
  t.is(logEntries(taker.log, /^TAKEOVER: this follower took vPool 'pool'/).length, 1, taker.log.slice(-3000));
  if (taker === b) {
    // rb shares ra's failure domain and rc followed from another one: rb must have deferred before it took it
    const took = Date.parse(String(logEntries(b.log, /^TAKEOVER/)[0]!.timestamp));
    t.true(deferred.some((e) => Date.parse(String(e.timestamp)) <= took), `rb took over without deferring to rc:\n${b.log.slice(-3000)}`);
  }
  for (const m of [taker, other]) {
    const bad = await badBlocks(t, m.p('vms', 'disk'), ackedAtFault, () => `${m.mountpoint}'s log:\n${m.log.slice(-8000)}`);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${ackedAtFault.length} writes acknowledged on ra missing through ${m.mountpoint}`);
  }
  return { taker, other, w, checked: ackedAtFault, ms };
}

/**
 * Waits until B or C took the vPool over from A (its log: `took vPool 'pool' over from router 'ra'`) and the other
 * follows the taker; fails the test after 60 s (90 s for the other to follow) or if B or C exits.
 */
export async function waitTakeover(t: ExecutionContext, r: ThreeRouters, what: string): Promise<{ taker: MountHandle; other: MountHandle; tn: string; on: string }> {
  const { b, c } = r;
  const deadline = Date.now() + 60_000;
  let taker: MountHandle | undefined;
  while ((taker = [b, c].find((m) => logEntries(m.log, TOOK).length > 0)) === undefined) {
    for (const m of [b, c]) if (!m.alive) t.fail(`${m.mountpoint}'s router exited:\n${m.log}`);
    if (Date.now() > deadline) t.fail(`neither B nor C took the vPool over within 60 s of ${what}:\n${b.log.slice(-3000)}\n${c.log.slice(-3000)}`);
    await sleep(100);
  }
  const other = taker === b ? c : b;
  const [tn, on] = taker === b ? ['rb', 'rc'] : ['rc', 'rb'];
  while (logEntries(other.log, new RegExp(`^following router '${tn}'`)).length === 0) {
    if (!other.alive) t.fail(`${on} exited:\n${other.log}`);
    if (Date.now() > deadline + 30_000) t.fail(`${on} does not follow ${tn}:\n${other.log.slice(-3000)}`);
    await sleep(100);
  }
  return { taker, other, tn: tn!, on: on! };
}

export interface Resumed {
  /** The writes acknowledged after the SIGCONT (after the first `before`). */
  late: number[];
  /** Those of them not in /vms/disk as the new owner serves it. */
  lost: number[];
}

/**
 * SIGCONT of the stopped `zombie` (router `name`) whose writer `w` had `before` writes acknowledged when it was
 * stopped; waits until it logs `fenced` (default: any FENCED line) — or, with `orAcked`, until it acknowledged
 * that many writes after the SIGCONT (a zombie nothing tells) — then a second more for its late replies, and stops
 * the writer. Returns the late acknowledgements and which of them are not in what `serving` serves.
 */
export async function resumeUntilFenced(t: ExecutionContext, zombie: MountHandle, name: string, w: Writer, before: number, serving: MountHandle,
  opts: { fenced?: RegExp; orAcked?: number } = {}): Promise<Resumed> {
  const fenced = opts.fenced ?? /^FENCED/;
  const { orAcked } = opts;
  process.kill(zombie.pid, 'SIGCONT');
  await until(orAcked === undefined ? `${name} is fenced` : `${name} is fenced, or acknowledges ${orAcked} writes after SIGCONT`,
    () => logEntries(zombie.log, fenced).length > 0 || (orAcked !== undefined && w.acked.length >= before + orAcked), 60_000);
  await sleep(1000);
  await w.stop();
  const late = w.acked.slice(before);
  return { late, lost: await badBlocks(t, serving.p('vms', 'disk'), late) };
}

/**
 * /vms/disk moved to B, a writer on B's mount (`fsyncEvery`) until B records it under a sync DTL and the writer has
 * `atLeast` (plus up to 300 more) writes acknowledged; then SIGSTOP of B (SIGCONT at teardown) and until A takes
 * the vDisk back from it. The writer is left running (stopped at teardown).
 */
export async function stoppedDelegate(t: ExecutionContext, r: ThreeRouters, fsyncEvery: number, atLeast: number): Promise<Writer> {
  const { a, b } = r;
  t.teardown(() => { if (b.alive) process.kill(b.pid, 'SIGCONT'); });
  await moveVDisk(t, r.nc.c, a.p('vms', 'disk'), 'rb');
  const wb = startWriter(b.p('vms', 'disk'), 0, fsyncEvery);
  t.teardown(() => wb.stop());
  await recordedSync(r.nc.c, 'rb', '/vms/disk');
  await wb.waitFor(atLeast + Math.floor(Math.random() * 300));
  process.kill(b.pid, 'SIGSTOP');
  await until('ra takes /vms/disk back from the stopped rb', () => logEntries(a.log, /^TAKEBACK: vDisk \/vms\/disk taken back from dead router 'rb'/).length === 1, 90_000);
  return wb;
}
