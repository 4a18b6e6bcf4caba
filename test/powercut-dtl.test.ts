/**
 * A DTL server under a power cut: a real `vpoolfs dtl-server` process (helpers/dtl-server.ts) keeps its files
 * on a loop-device ext4 (helpers/powercut.ts); two clients, one vDisk each, add entries in batches of changing
 * size (segments roll over every 8 MiB), Flush now and then and trim with RemoveUpTo; at a random moment the
 * filesystem is cut, the server killed, the filesystem mounted again and the server restarted on it.
 * Every entry whose Flush was acknowledged (and that no RemoveUpTo sent may have trimmed) must come back from
 * GetEntries, byte-exact and in order; nothing that was never sent may come back (dtl-client/store.ts).
 * Rounds: VPOOLFS_POWERCUT_ROUNDS (default 4); VPOOLFS_SEED replays the op sequence.
 */
import { DtlClient } from '../dtl-client/client.js';
import { encodeEntry, type DtlEntry } from '../dtl-client/messages.js';
import { DtlServerProcess } from './helpers/dtl-server.js';
import { q, sh, tempRoot } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import { pattern, rng } from './helpers/ref-disk.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { runSeed } from './helpers/seed.js';

const test = powercutTest();
const ROUNDS = Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 4);
const PER_TAG = 50;

/** Entry n of vDisk `vd`: tag 1 + n/50, address n, 4 KiB derived from (seed, vd, n). */
function entry(seed: number, vd: number, n: number): Buffer {
  return encodeEntry(0, 1 + Math.floor(n / PER_TAG), n, pattern(seed + vd * 7777, n, 4096));
}

interface Driver {
  /** Entries 0..flushed-1 were added before an acknowledged Flush. */
  flushed: number;
  /** Entries 0..sent-1 were sent (acknowledged or not). */
  sent: number;
  /** The highest RemoveUpTo floor sent (acknowledged or not): entries with tag <= it may be gone. */
  floorSent: number;
  /** Register was acknowledged. */
  registered: boolean;
  error: string;
}

/** Adds, flushes and trims for vDisk `vd` until a call fails (the cut, the kill). */
async function drive(c: DtlClient, seed: number, vd: number, d: Driver): Promise<void> {
  const r = rng(seed * 31 + vd);
  const id = `vd${vd}`;
  try {
    await c.register(id, 'router-pc', 1);
    d.registered = true;
    for (;;) {
      const k = 1 + Math.floor(r() * 24);
      const batch = Array.from({ length: k }, (_, i) => entry(seed, vd, d.sent + i));
      d.sent += k;
      await c.addEntries(id, batch);
      const x = r();
      if (x < 0.3) {
        const upTo = d.sent;
        await c.flush(id);
        d.flushed = upTo;
      } else if (x < 0.33 && d.flushed > 4 * PER_TAG) {
        // trim some of what is flushed, as a router does once the SCOs are in the backend
        d.floorSent = Math.max(d.floorSent, Math.floor(r() * (d.flushed / PER_TAG)));
        await c.removeUpTo(id, d.floorSent);
      }
    }
  } catch (err) {
    d.error = (err as Error).message;
  }
}

test(`DTL server: every entry whose Flush was acknowledged survives a power cut (${ROUNDS} rounds)`, async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 1024);
  const base = runSeed();
  t.log(`VPOOLFS_SEED=${base}`);
  const problems: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const seed = base + round;
    const r = rng(seed ^ 0x2545f491);
    const server = new DtlServerProcess(lfs.p(`dtl${round}`));
    t.teardown(() => server.kill9());
    await server.start();
    const drivers: Driver[] = [0, 1].map(() => ({ flushed: 0, sent: 0, floorSent: 0, registered: false, error: '' }));
    const clients = [0, 1].map(() => new DtlClient({ servers: [server.address], timeoutMs: 5000 }));
    const running = drivers.map((d, vd) => drive(clients[vd], seed, vd, d));
    const runMs = Math.floor(r() * 2500);
    // the cut lands during the traffic: after both registered (or failed), then a random while
    for (let i = 0; i < 1000 && drivers.some((d) => !d.registered && d.error === ''); i++) await sleep(10);
    await sleep(runMs);
    // what was acknowledged before the cut: a Flush answered later may have straddled it (the kernel can
    // report success for an fdatasync in flight when the filesystem goes down; a real power cut answers nothing)
    const flushedAtCut = drivers.map((d) => d.flushed);
    await lfs.cut();
    await server.kill9();
    await Promise.all(running);
    for (const c of clients) c.close();
    await lfs.remount();
    const logFrom = server.output.length;
    await server.start();

    const c = new DtlClient({ servers: [server.address], timeoutMs: 5000 });
    for (const [vd, d] of drivers.entries()) {
      const flushed = flushedAtCut[vd];
      const where = `round ${round} seed ${seed} vd${vd} (cut after ${runMs} ms; ${d.registered ? '' : 'Register not acknowledged; '}${d.sent} entries sent, ${flushed} flushed before the cut (${d.flushed} in all), trim floor sent ${d.floorSent}; stopped by: ${d.error})`;
      t.log(where);
      const got: DtlEntry[] = [];
      try {
        await c.getEntries(`vd${vd}`, 0, (e) => got.push(e.kind === 'cluster' ? { ...e, data: Buffer.from(e.data) } : e));
      } catch (err) {
        // a Register cut before it was acknowledged may be gone with everything after it
        if (!d.registered && (err as { code?: string }).code === 'NOT_REGISTERED') continue;
        problems.push(`${where}: GetEntries failed after the restart: ${(err as Error).message}`);
        continue;
      }
      // what must be there: every flushed entry above the highest floor sent, in order
      const firstKept = d.floorSent * PER_TAG;
      const byAddress = new Map<number, DtlEntry>();
      let prev = -1;
      for (const e of got) {
        if (e.kind !== 'cluster') {
          problems.push(`${where}: an entry that was never sent: ${JSON.stringify(e)}`);
          continue;
        }
        if (e.address <= prev) problems.push(`${where}: entry ${e.address} after entry ${prev}: out of order or twice`);
        prev = e.address;
        if (e.address >= d.sent || !entry(seed, vd, e.address).subarray(21).equals(e.data)) {
          problems.push(`${where}: entry ${e.address} holds bytes that were never sent for it`);
        }
        byAddress.set(e.address, e);
      }
      const lost: number[] = [];
      for (let n = firstKept; n < flushed; n++) if (!byAddress.has(n)) lost.push(n);
      if (lost.length > 0) {
        const said = server.output.slice(logFrom).split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(0, 4).join('\n  ');
        const files = (await sh(`ls -l ${q(lfs.p(`dtl${round}`, 'vd', `vd${vd}`))}`)).stdout.replace(/\n/g, ' | ');
        problems.push(`${where}: the server said after the restart: ${said || '(nothing)'}; its files: ${files} (an entry is 4117 bytes)`);
        problems.push(`${where}: ${lost.length} flushed entries are gone: ${lost.slice(0, 10).join(' ')}${lost.length > 10 ? ' …' : ''} (got ${got.length} entries, first ${got[0]?.kind === 'cluster' ? got[0].address : '-'}, last ${got.length > 0 && got[got.length - 1].kind === 'cluster' ? (got[got.length - 1] as { address: number }).address : '-'})`);
      }
    }
    c.close();
    await server.kill9();
  }
  t.deepEqual(problems, [], `VPOOLFS_SEED=${base}:\n${problems.join('\n')}`);
});

test('DTL server left running after the cut: no AddEntries or Flush is acknowledged', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 256);
  const seed = runSeed();
  const server = new DtlServerProcess(lfs.p('dtl'));
  t.teardown(() => server.kill9());
  await server.start();
  const c = new DtlClient({ servers: [server.address], timeoutMs: 5000 });
  t.teardown(() => c.close());
  await c.register('vd', 'router-pc', 1);
  await c.addEntries('vd', Array.from({ length: 20 }, (_, n) => entry(seed, 0, n)));
  await c.flush('vd');
  await c.addEntries('vd', Array.from({ length: 20 }, (_, n) => entry(seed, 0, 20 + n))); // in the kernel, not on the disk
  await lfs.cut();
  const outcomes: string[] = [];
  const attempt = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
      outcomes.push(`${what}: ACKNOWLEDGED`);
    } catch (err) {
      outcomes.push(`${what}: failed (${(err as Error).message.slice(0, 120)})`);
    }
  };
  await attempt('flush of entries 20-39 (never on the disk)', () => c.flush('vd'));
  await attempt('flush again', () => c.flush('vd'));
  await attempt('add entries 40-59', () => c.addEntries('vd', Array.from({ length: 20 }, (_, n) => entry(seed, 0, 40 + n))));
  await attempt('flush after that', () => c.flush('vd'));
  await attempt('flush once more', () => c.flush('vd'));
  const acked = outcomes.filter((o) => o.endsWith('ACKNOWLEDGED'));
  t.deepEqual(acked, [], `after the cut:\n${outcomes.join('\n')}`);
  await server.kill9();
  await lfs.remount();
  await server.start();
  const got: number[] = [];
  await c.getEntries('vd', 0, (e) => e.kind === 'cluster' && got.push(e.address));
  t.true(got.length >= 20 && got.slice(0, 20).every((a, i) => a === i), `the 20 entries flushed before the cut are back: ${got.join(' ')}`);
});
