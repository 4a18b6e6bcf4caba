/**
 * One scrub of a vDisk at a time across processes (issue 12; volume/scrub/scrub-lock.ts), with real processes:
 * a remote scrubber (test/helpers/scrub-lock-child.ts, run as another host: a UTS namespace with its own
 * hostname) holds the lock of vDisk /d in the middle of its job;
 * meanwhile `vpoolfs scrub --backend … --vdisk ID` is refused naming it, `vpoolfs scrub --backend …` over
 * the whole tree skips /d and says so (and scrubs the other vDisk), and the owner's scrub is refused (BUSY)
 * naming it. Then the holder is killed (-9): the lease it no longer renews expires (a short one, given to the
 * child), a new `vpoolfs scrub --backend` takes it over and leaves a result the owner applies; the vDisk reads
 * the same. And: of many takers racing for one lock at once, exactly one wins; a lease of a dead process of this
 * host is taken at once, one of another host only once it expired.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import { CLI, ok, q, sh } from './helpers/mount.js';
import { openBlobStore } from '../volume/backend/index.js';
import { ScrubLock, scrubLockHolder, scrubLockPrefix } from '../volume/scrub/scrub-lock.js';
import { isCode } from '../util/errors.js';
import type { VPool } from '../volume/types.js';

const CHILD = fileURLToPath(new URL('./helpers/scrub-lock-child.js', import.meta.url));
/** The held child's lease: renewed every third of it while it lives, so it never runs out then. */
const CHILD_LEASE_MS = 4000;
/** The holder's hostname: a lease of another host is waited out (one of this host whose pid is gone is not). */
const OTHER_HOST = 'scrub-lock-other-host';

/** A vDisk whose first SCOs are half overwritten: a scrub rewrites them (so it puts scrub objects). */
async function halfOverwritten(pool: VPool, p: string, seed: number): Promise<Buffer> {
  const size = 32 * CS;
  await pool.createFile(p, 0o644, 0, 0, size);
  const v = pool.vdisk(p);
  await v.write(0, pattern(seed, size));
  for (let c = 0; c < 32; c += 2) await v.write(c * CS, pattern(seed + 100 + c, CS));
  return v.read(0, size);
}

test('scrub lock: a second scrubber is refused or skips, naming the holder; after a kill -9 the expired lease is taken over', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const want = await halfOverwritten(pool, '/d', 1);
  await halfOverwritten(pool, '/e', 2);
  await pool.syncToBackend();
  const id = pool.vdisk('/d').info().id;
  const eId = pool.vdisk('/e').info().id;
  const scratch = path.join(env.root, 'scratch');

  // the holder runs as another host: a UTS namespace with its own hostname (unshare and sh exec, so the pid is node's)
  const cmd = [CHILD, env.backendUrl, id, scratch, String(CHILD_LEASE_MS)].map(q).join(' ');
  const child = spawn('unshare', ['-u', 'sh', '-c', `hostname ${OTHER_HOST} && exec ${q(process.execPath)} ${cmd}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  let killed = false;
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('held\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before it was held: ${out}`)));
  });
  const holderText = new RegExp(`vDisk ${id} is being scrubbed by lock test holder on ${OTHER_HOST} \\(pid ${child.pid}\\)`);

  // the same vDisk named: refused, the holder named
  const one = await sh(`node ${q(CLI)} scrub --backend ${q(env.backendUrl)} --scratch ${q(scratch)} --vdisk ${id}`, { timeoutMs: 60_000 });
  t.not(one.code, 0, `a second scrubber of the held vDisk fails: ${one.stdout} ${one.stderr}`);
  t.regex(one.stderr, holderText, 'and names the holder');
  // the whole tree: the held vDisk skipped and said, the other one scrubbed
  const all = await ok(t, `node ${q(CLI)} scrub --backend ${q(env.backendUrl)} --scratch ${q(scratch)}`, 60_000);
  t.regex(all, new RegExp(`^${id}: skipped: .*being scrubbed by lock test holder`, 'm'), 'the held vDisk is skipped');
  t.regex(all, new RegExp(`^${eId}: result `, 'm'), 'the other vDisk is scrubbed');
  t.regex(all, /1 of 2 vDisk\(s\) skipped/);
  // the owner
  const owner = await pool.scrub.scrub('/d').then(() => null, (err: unknown) => err as Error);
  t.true(owner !== null && isCode(owner, 'BUSY'), 'the owner\'s scrub of the held vDisk is refused');
  t.regex(owner?.message ?? '', holderText);
  t.is(pool.scrub.statusAt('/d').lastRun?.outcome, 'failed');

  t.is(child.exitCode, null, 'the holder was alive until here');
  killed = child.kill('SIGKILL');
  await exited;
  t.true(killed);
  const store = await openBlobStore(env.backendUrl);
  t.teardown(() => store.close());
  const dead = await scrubLockHolder(store, id);
  t.truthy(dead, 'the killed holder\'s lease is still there: it was never released');
  t.is(dead!.pid, child.pid!);
  t.is(dead!.host, OTHER_HOST);
  // wait out the lease the killed holder no longer renews (its own expiry, on this host's clock)
  await new Promise((r) => setTimeout(r, Math.max(0, dead!.expiresAt - Date.now()) + 20));
  const again = await ok(t, `node ${q(CLI)} scrub --backend ${q(env.backendUrl)} --scratch ${q(scratch)} --vdisk ${id}`, 60_000);
  t.regex(again, new RegExp(`^${id}: result `, 'm'), 'a new scrubber takes the expired lease over and scrubs');
  t.is(await scrubLockHolder(store, id), null, 'and releases it at the end');
  const gens = await store.list(scrubLockPrefix(id));
  t.is(gens.length, 1, `only the newest generation of the lock is kept: ${gens.join(', ')}`);
  t.true(gens[0].endsWith('0000000000000002'), 'the take-over is the second generation');

  const applied = await pool.scrub.applyPending('/d');
  t.is(applied?.outcome, 'applied', 'the owner applies the result of the scrubber that took over');
  t.true((await pool.vdisk('/d').read(0, want.length)).equals(want), '/d reads the same');
  const r = await pool.scrub.scrub('/d');
  t.is(r.outcome, 'nothing to do', 'the owner scrubs again once the lock is free');
  t.deepEqual(await pool.scrub.sweep('/d', true), [], 'gc --dry-run finds nothing left behind');
});

test('scrub lock: of many takers at once exactly one wins; a released or expired lock is taken again', async (t) => {
  const env = poolEnv(t);
  const store = await openBlobStore(env.backendUrl);
  t.teardown(() => store.close());
  let clock = 1_000_000;
  const now = (): number => clock;
  const takers = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => ScrubLock.take(store, 'v1', { holder: `taker ${i}`, leaseMs: 1000, now })));
  const won = takers.filter((x): x is PromiseFulfilledResult<ScrubLock> => x.status === 'fulfilled').map((x) => x.value);
  t.is(won.length, 1, 'exactly one taker holds the lock');
  for (const x of takers) if (x.status === 'rejected') t.true(isCode(x.reason, 'BUSY') && /being scrubbed by taker \d/.test((x.reason as Error).message), String(x.reason));
  await won[0].release();
  const next = await ScrubLock.take(store, 'v1', { holder: 'next', leaseMs: 1000, now });
  await t.throwsAsync(ScrubLock.take(store, 'v1', { holder: 'late', leaseMs: 1000, now }), { message: /being scrubbed by next/ });
  clock += 1001; // `next` is never renewed on this clock: its lease runs out
  const over = await ScrubLock.take(store, 'v1', { holder: 'over', leaseMs: 1000, now });
  next.check(); // it does not know yet
  await (next as unknown as { renew(): Promise<void> }).renew();
  t.throws(() => next.check(), { message: /lost to over/ }, 'the overtaken holder finds out at its next renewal');
  await next.release();
  t.is((await scrubLockHolder(store, 'v1', clock))?.holder, 'over', 'its release does not free the lock it lost');
  await over.release();
  t.is(await scrubLockHolder(store, 'v1', clock), null);

  // a holder of this host whose process is gone (an owner restarted after a kill -9) is taken over at once
  const gone = spawn('true');
  await new Promise((r) => gone.once('exit', r));
  await store.put(`${scrubLockPrefix('v2')}0000000000000001`, Buffer.from(JSON.stringify({ holder: 'killed', host: os.hostname(), pid: gone.pid, token: 'x', takenAt: clock, expiresAt: clock + 3_600_000 })));
  t.is((await scrubLockHolder(store, 'v2', clock))?.holder, 'killed', 'its lease runs for an hour yet');
  const taken = await ScrubLock.take(store, 'v2', { holder: 'restarted', leaseMs: 1000, now });
  t.is((await scrubLockHolder(store, 'v2', clock))?.holder, 'restarted');
  await taken.release();
  // one of another host is not
  await store.put(`${scrubLockPrefix('v3')}0000000000000001`, Buffer.from(JSON.stringify({ holder: 'elsewhere', host: 'another-host', pid: gone.pid, token: 'y', takenAt: clock, expiresAt: clock + 3_600_000 })));
  await t.throwsAsync(ScrubLock.take(store, 'v3', { holder: 'here', leaseMs: 1000, now }), { message: /being scrubbed by elsewhere on another-host/ });
});
