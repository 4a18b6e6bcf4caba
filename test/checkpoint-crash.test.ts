/**
 * Map checkpoints that must not be believed (volume/lineage/map-checkpoint.ts):
 *  - torn or damaged objects (cut in half, one byte changed) are ignored: the rebuild falls back to the older
 *    checkpoint kept beside the newest, then to replaying every TLog, and reads as the reference each time;
 *  - a checkpoint covering TLogs that a fence excluded after a takeover (a zombie's late uploads) is ignored:
 *    the rebuild shows the history the fence accepted, as the rebuild without checkpoints does;
 *  - a real process killed with SIGKILL while it writes checkpoints (up to 8 MiB each, one per TLog): after each
 *    kill, rebuilds from the backend with and without checkpoints restore the very same map, slot counts and
 *    size, and the same bytes. VPOOLFS_CHECKPOINT_KILLS sets the number of kills (default 4), VPOOLFS_SEED replays.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { openVPool } from '../volume/vpool.js';
import type { VPool } from '../volume/types.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { openBlobStore } from '../volume/backend/index.js';
import { backendDoc, chainItems, readItem } from '../volume/lineage/chain.js';
import { backendTlogs } from '../volume/datapath/formats/backend-layout.js';
import { FENCE_GAP, fenceKey, vdiskFences, type VDiskFence } from '../volume/datapath/formats/epoch-fence.js';
import { chainStart } from '../volume/lineage/chain-start.js';
import { RecordType } from '../volume/datapath/formats/tlog-format.js';
import { newestCheckpoint } from '../volume/lineage/checkpoint-job.js';
import { checkpointPrefix } from '../volume/lineage/map-checkpoint.js';
import { logger } from '../util/log.js';
import { emptyDoc } from '../volume/lineage/snapshot-store.js';
import { pattern, RefDisk } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const CS = 4096;
const log = logger('checkpoint-crash');
const CHILD = fileURLToPath(new URL('./helpers/checkpoint-child.js', import.meta.url));

function layout(): { root: string; state: string; backendDir: string; backendUrl: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-ckpt-crash-'));
  return { root, state: path.join(root, 'state'), backendDir: path.join(root, 'backend'), backendUrl: `file://${path.join(root, 'backend')}` };
}

/** The newest checkpoint of vDisk `id` that fits its chain in the backend now (its key), or null. */
async function fitting(backendUrl: string, id: string): Promise<string | null> {
  const b = await openBlobStore(backendUrl);
  try {
    const doc = (await backendDoc(b, id)) ?? emptyDoc();
    const items = await chainItems(b, id, doc, Infinity, await backendTlogs(b, id));
    const key = (await newestCheckpoint(b, id, doc, items, log))?.key ?? null;
    // the rebuild judges checkpoints from their own record without listing the history
    // (volume/lineage/chain-start.ts): it must take the very one the whole chain says fits
    const start = await chainStart(b, id, doc, await vdiskFences(b, id), { load: true, log });
    if ((start.found?.key ?? null) !== key) throw new Error(`the rebuild would start from ${String(start.found?.key)}, the whole chain says ${String(key)}`);
    return key;
  } finally {
    await b.close();
  }
}

function fingerprint(v: VDiskImpl): string {
  const entries = [...v.map.entries()].map(([a, l]) => `${a}:${l.sco}.${l.slot}.${l.depth}`).join(',');
  return `${v.size}|${[...v.scoCounts].sort((a, b) => a[0] - b[0]).join(';')}|${entries}`;
}

test('a torn or damaged checkpoint is ignored: the older one, then a full replay, read as the reference', async (t) => {
  const { seed, rand: r } = seeded(t);
  const l = layout();
  t.teardown(() => fs.rmSync(l.root, { recursive: true, force: true }));
  const open = (): Promise<VPool> => openVPool({ name: 'torn', stateDir: l.state, backendUrl: l.backendUrl, scoClusters: 8, tlogScos: 1, scoMaxAgeMs: 3_600_000, checkpointEveryTlogs: 4 });
  let pool = await open();
  await pool.createFile('/a', 0o644, 0, 0, 256 * CS);
  const ref = new RefDisk();
  ref.resize(256 * CS);
  for (let i = 0; i < 30; i++) {
    const off = Math.floor(r() * 250) * CS;
    const data = pattern(seed, i, (1 + Math.floor(r() * 6)) * CS);
    await pool.vdisk('/a').write(off, data);
    ref.write(off, data);
    await pool.vdisk('/a').syncToBackend();
  }
  const id = pool.vdisk('/a').info().id;
  await pool.close(); // the clean stop writes the last checkpoint
  const dir = path.join(l.backendDir, checkpointPrefix(id));
  const keys = fs.readdirSync(dir).sort();
  t.is(keys.length, 2, 'the newest checkpoint and the one it was made from');
  t.is(await fitting(l.backendUrl, id), checkpointPrefix(id) + keys[1]);

  const rebuild = async (where: string): Promise<void> => {
    fs.rmSync(l.state, { recursive: true, force: true });
    pool = await open();
    t.true((await pool.vdisk('/a').read(0, ref.size)).equals(ref.read(0, ref.size)), `${where}: reads as the reference`);
    await pool.close();
  };
  await rebuild('from the newest checkpoint');
  // the rebuild and its stop wrote nothing new (nothing was replayed past the newest): still the same two
  t.deepEqual(fs.readdirSync(dir).sort(), keys);

  const newest = path.join(dir, keys[1]);
  const whole = fs.readFileSync(newest);
  fs.writeFileSync(newest, whole.subarray(0, whole.length >> 1)); // torn: the first half
  t.is(await fitting(l.backendUrl, id), checkpointPrefix(id) + keys[0], 'the torn one is skipped for the older one');
  const older = path.join(dir, keys[0]);
  const buf = fs.readFileSync(older);
  buf[buf.length >> 1] ^= 0x40; // one byte changed in the middle of the map
  fs.writeFileSync(older, buf);
  fs.writeFileSync(newest, whole.subarray(0, whole.length - 1)); // torn by one byte
  t.is(await fitting(l.backendUrl, id), null, 'neither is believed');
  await rebuild('with both checkpoints damaged (every TLog replayed)');
});

test('a checkpoint covering TLogs a fence excluded after a takeover is ignored', async (t) => {
  const { seed, rand: r } = seeded(t);
  const l = layout();
  t.teardown(() => fs.rmSync(l.root, { recursive: true, force: true }));
  const open = (loadCheckpoints: boolean): Promise<VPool> => openVPool({
    name: 'fence', stateDir: l.state, backendUrl: l.backendUrl, scoClusters: 8, tlogScos: 1, scoMaxAgeMs: 3_600_000, checkpointEveryTlogs: loadCheckpoints ? 3 : 0, loadCheckpoints,
  });
  let pool = await open(true);
  await pool.createFile('/a', 0o644, 0, 0, 128 * CS);
  const ref = new RefDisk();
  ref.resize(128 * CS);
  const at = new Map<number, RefDisk>(); // the reference after each TLog
  for (let i = 0; i < 20; i++) {
    const off = Math.floor(r() * 120) * CS;
    const data = pattern(seed, i, (1 + Math.floor(r() * 6)) * CS);
    await pool.vdisk('/a').write(off, data);
    ref.write(off, data);
    await pool.vdisk('/a').syncToBackend();
    at.set((pool.vdisk('/a') as VDiskImpl).corkedTlog, ref.clone());
  }
  const id = pool.vdisk('/a').info().id;
  await pool.close();
  t.not(await fitting(l.backendUrl, id), null, 'a checkpoint covers the whole chain');
  // a takeover happened when only the first TLogs were in the backend: the later ones are a zombie's
  const b = await openBlobStore(l.backendUrl);
  const tlogs = await backendTlogs(b, id);
  const accepted = tlogs[Math.floor(tlogs.length / 2)];
  let acceptedSco = 0;
  for (const item of await chainItems(b, id, (await backendDoc(b, id)) ?? emptyDoc(), accepted, tlogs)) {
    for (const rec of await readItem(b, id, item)) if (rec.type === RecordType.Sco) acceptedSco = Math.max(acceptedSco, rec.sco);
  }
  const fence: VDiskFence = { epoch: 0x7000, router: 'taker', acceptedTlog: accepted, acceptedSco, firstTlog: tlogs[tlogs.length - 1] + FENCE_GAP, firstSco: acceptedSco + 10 * FENCE_GAP, at: Date.now() };
  await b.put(fenceKey(id, fence.epoch), Buffer.from(JSON.stringify(fence)));
  await b.close();
  const want = at.get(accepted)!;
  const check = async (loadCheckpoints: boolean): Promise<string> => {
    fs.rmSync(l.state, { recursive: true, force: true });
    pool = await open(loadCheckpoints);
    const v = pool.vdisk('/a') as VDiskImpl;
    t.is(v.size, want.size);
    t.true((await v.read(0, want.size)).equals(want.read(0, want.size)), `rebuilt ${loadCheckpoints ? 'with' : 'without'} checkpoints: the history the fence accepted`);
    const f = fingerprint(v);
    await pool.close();
    return f;
  };
  const fit = await fitting(l.backendUrl, id);
  t.true(fit === null || Number.parseInt(fit.slice(fit.lastIndexOf('/') + 1), 16) <= accepted, `no checkpoint past the fence is believed (${fit})`);
  t.is(await check(true), await check(false));
});

test('SIGKILL while checkpoints are written: rebuilds with and without them restore the same map and bytes', async (t) => {
  const { seed, rand: r } = seeded(t);
  const l = layout();
  t.teardown(() => fs.rmSync(l.root, { recursive: true, force: true }));
  const kills = Number(process.env.VPOOLFS_CHECKPOINT_KILLS ?? 4);
  let midPut = 0;
  let fromCheckpoint = 0;
  for (let round = 0; round < kills; round++) {
    // a fresh state every round: the child itself rebuilds from the backend, from what the kills left
    const childState = path.join(l.root, `child-${round}`);
    const child = spawn(process.execPath, [CHILD, childState, l.backendDir, String(seed + round)], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => void child.kill('SIGKILL'));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    let out = '';
    const target = 4 + Math.floor(r() * 8);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const up = out.indexOf('\nup\n') >= 0 ? out.indexOf('\nup\n') : out.startsWith('up\n') ? 0 : -1;
        if (up >= 0 && (out.slice(up).match(/^ckpt /gm) ?? []).length >= target) resolve(); // the 8 MiB ones
      });
      void exited.then(() => reject(new Error(`the child exited early:\n${out}`)));
    });
    // at once: into the put of the checkpoint that just started, often (a file:// put is a temp file renamed
    // into place, so a kill there leaves a temp object that no listing shows), or just after it
    if (r() < 0.25) await sleep(Math.floor(r() * 10));
    child.kill('SIGKILL');
    await exited;
    const ckDirs = fs.readdirSync(path.join(l.backendDir, 'vdisks')).map((id) => path.join(l.backendDir, 'vdisks', id, 'checkpoint'));
    if (ckDirs.some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.startsWith('.tmp~')))) midPut++;

    const id = fs.readdirSync(path.join(l.backendDir, 'vdisks'))[0];
    if ((await fitting(l.backendUrl, id)) !== null) fromCheckpoint++;
    const rebuilt = async (loadCheckpoints: boolean): Promise<{ f: string; data: Buffer[] }> => {
      const state = path.join(l.root, `check-${round}-${loadCheckpoints}`);
      const pool = await openVPool({ name: 'ckpt-crash', stateDir: state, backendUrl: l.backendUrl, scoClusters: 8, tlogScos: 1, checkpointEveryTlogs: 0, loadCheckpoints, force: true, claimLeaseMs: 2000 });
      try {
        const v = pool.vdisk('/d') as VDiskImpl;
        const addrs = [...v.map.entries()].map(([a]) => a);
        const data: Buffer[] = [];
        for (let k = 0; k < 64 && addrs.length > 0; k++) data.push(await v.read(addrs[(k * 7919) % addrs.length] * CS, CS));
        return { f: fingerprint(v), data };
      } finally {
        await pool.close();
        fs.rmSync(state, { recursive: true, force: true });
      }
    };
    const without = await rebuilt(false);
    const withCp = await rebuilt(true);
    t.true(without.f === withCp.f, `round ${round}: the map, slot counts and size match between the rebuilds`);
    t.deepEqual(withCp.data, without.data, `round ${round}: the same bytes`);
  }
  t.log(`${kills} kills, ${midPut} in the middle of a checkpoint's put (a temp object left), ${fromCheckpoint} with a fitting checkpoint`);
  t.true(fromCheckpoint > 0, 'some rebuild had a checkpoint to start from');
});
