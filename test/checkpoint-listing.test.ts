/**
 * A rebuild from the backend that starts from a map checkpoint lists only what came after it
 * (volume/lineage/chain-start.ts): a real file:// store wrapped in a store that counts the keys every list
 * returns. A vDisk with a history of VPOOLFS_LISTING_TLOGS TLogs (default 240) and a checkpoint at its end,
 * then a dozen more TLogs without one; the rebuild on an empty state directory must get back at most those
 * TLog and SCO keys (plus the checkpoint's last TLog, which it checks is still there) — with the old
 * listing of every key it fails — and read as the reference, as the rebuild that lists and replays
 * everything (loadCheckpoints off) does; so does it with a TLog after the checkpoint damaged (repaired from its
 * SCO's slots, which only the listing after the checkpoint names). VPOOLFS_SEED replays.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { openBlobStore } from '../volume/backend/index.js';
import type { BlobStore, ListOptions } from '../volume/backend/types.js';
import { keyNumber, listedTlogs } from '../volume/datapath/formats/backend-layout.js';
import { checkpointPrefix } from '../volume/lineage/map-checkpoint.js';
import { pattern, RefDisk } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;

/** A store over `inner` that records, per list call, its prefix, its startAfter and how many keys it returned. */
function countingStore(inner: BlobStore): { store: BlobStore; lists: Array<{ prefix: string; startAfter?: string; keys: number }> } {
  const lists: Array<{ prefix: string; startAfter?: string; keys: number }> = [];
  const store: BlobStore = {
    url: inner.url,
    put: (key, data) => inner.put(key, data),
    get: (key) => inner.get(key),
    getRange: (key, offset, length) => inner.getRange(key, offset, length),
    head: (key) => inner.head(key),
    list: async (prefix: string, opts?: ListOptions) => {
      const keys = await inner.list(prefix, opts);
      lists.push({ prefix, startAfter: opts?.startAfter, keys: keys.length });
      return keys;
    },
    delete: (key) => inner.delete(key),
    close: async () => undefined, // the pool's close: the test closes `inner` itself
  };
  return { store, lists };
}

test('a rebuild from a checkpoint lists only the TLogs and SCOs after it, and reads as the reference', async (t) => {
  const { seed, rand: r } = seeded(t);
  const history = Number(process.env.VPOOLFS_LISTING_TLOGS ?? 240);
  const later = 12;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-ckpt-listing-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const state = path.join(root, 'state');
  const backendDir = path.join(root, 'backend');
  const backendUrl = `file://${backendDir}`;
  const base = { name: 'listing', stateDir: state, scoClusters: 8, tlogScos: 1, scoMaxAgeMs: 3_600_000 };
  const ref = new RefDisk();
  const writeTlogs = async (pool: VPool, n: number, from: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const off = Math.floor(r() * 250) * CS;
      const data = pattern(seed, from + i, (1 + Math.floor(r() * 6)) * CS);
      await pool.vdisk('/a').write(off, data);
      ref.write(off, data);
      await pool.vdisk('/a').syncToBackend(); // one TLog each (tlogScos 1)
    }
  };

  let pool = await openVPool({ ...base, backendUrl, checkpointEveryTlogs: 64 });
  await pool.createFile('/a', 0o644, 0, 0, 256 * CS);
  ref.resize(256 * CS);
  await writeTlogs(pool, history, 0);
  const id = pool.vdisk('/a').info().id;
  await pool.close(); // the clean stop writes a checkpoint covering the whole history
  // a local restart that writes no checkpoint: `later` TLogs after the newest one
  pool = await openVPool({ ...base, backendUrl, checkpointEveryTlogs: 0 });
  await writeTlogs(pool, later, history);
  await pool.close();

  const raw = await openBlobStore(backendUrl);
  t.teardown(() => raw.close());
  const tlogs = await listedTlogs(raw, id);
  const checkpoints = (await raw.list(checkpointPrefix(id))).map(keyNumber);
  const newest = Math.max(...checkpoints);
  const after = tlogs.filter((n) => n > newest).length;
  t.true(tlogs.length >= history + later, `${tlogs.length} TLogs in the backend`);
  t.is(after, later, `the newest checkpoint ends at TLog ${newest}: ${later} TLogs after it`);

  const rebuild = async (loadCheckpoints: boolean): Promise<{ tlogKeys: number; scoKeys: number; whole: boolean }> => {
    fs.rmSync(state, { recursive: true, force: true });
    const counting = countingStore(raw);
    pool = await openVPool({ ...base, backend: counting.store, checkpointEveryTlogs: 0, loadCheckpoints });
    const lists = [...counting.lists]; // the open alone (the reads below list nothing of the history anyway)
    try {
      const v = pool.vdisk('/a') as VDiskImpl;
      t.is(v.size, ref.size);
      t.true((await v.read(0, ref.size)).equals(ref.read(0, ref.size)), `rebuilt ${loadCheckpoints ? 'from the checkpoint' : 'from every TLog'}: reads as the reference`);
    } finally {
      await pool.close();
    }
    const sum = (sub: string): number => lists.filter((l) => l.prefix === `vdisks/${id}/${sub}/`).reduce((s, l) => s + l.keys, 0);
    return { tlogKeys: sum('tlog'), scoKeys: sum('sco'), whole: lists.some((l) => l.prefix === `vdisks/${id}/tlog/` && l.startAfter === undefined) };
  };
  const full = await rebuild(false);
  t.log(`without checkpoints the rebuild listed ${full.tlogKeys} TLog and ${full.scoKeys} SCO keys`);
  t.true(full.tlogKeys >= history + later, 'the counting store sees a rebuild that lists the whole history');
  const fromCheckpoint = await rebuild(true);
  t.log(`from the checkpoint at TLog ${newest}: ${fromCheckpoint.tlogKeys} TLog and ${fromCheckpoint.scoKeys} SCO keys listed`);
  t.false(fromCheckpoint.whole, 'no listing of every TLog key');
  t.is(fromCheckpoint.tlogKeys, later + 1, 'the TLogs after the checkpoint and its last one');
  t.true(fromCheckpoint.scoKeys <= later, `at most the SCOs after the checkpoint (${fromCheckpoint.scoKeys})`);

  // a TLog after the checkpoint damaged in the backend: repaired from the SCOs listed after the checkpoint
  // (its own SCO's slots), the rebuild still reads as the reference and still lists only what came after
  const damaged = tlogs.filter((n) => n > newest)[Math.floor(r() * later)];
  const file = path.join(backendDir, 'vdisks', id, 'tlog', damaged.toString(16).padStart(8, '0'));
  const buf = fs.readFileSync(file);
  buf[buf.length - 5] ^= 0x20; // inside its SCO record
  fs.writeFileSync(file, buf);
  const repaired = await rebuild(true);
  t.log(`with TLog ${damaged} damaged: ${repaired.tlogKeys} TLog and ${repaired.scoKeys} SCO keys listed`);
  t.is(repaired.tlogKeys, later + 1);
});
