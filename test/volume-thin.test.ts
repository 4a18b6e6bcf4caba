/**
 * Thin provisioning: a vDisk takes space only for the clusters really written — in the write cache, in
 * the backend and in allocatedBytes — and a shrink gives it back; a regrown range reads zeros.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openMetadataStore } from '../mds/index.js';
import type { VDisk, VPool } from '../volume/types.js';
import { CS, listFiles, pattern, poolEnv, SLOT_SIZE, treeBytes } from './helpers/vpool.js';
import { copyInBackend } from './helpers/readpath.js';

const GiB = 2 ** 30;
/** Metadata only: TLog headers, tree.json. Much less than one cluster per 4 MiB of vDisk. */
const SMALL = 64 * 1024;

/** Bytes really taken on disk (st_blocks), which a sparse or preallocated file cannot hide. */
function diskBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += fs.statSync(path.join(e.parentPath, e.name)).blocks * 512;
  }
  return total;
}

function checkSmall(t: ExecutionContext, dir: string, what: string, limit = SMALL): void {
  const apparent = treeBytes(dir);
  const real = diskBytes(dir);
  t.true(apparent < limit, `${what}: ${apparent} bytes in files: ${listFiles(dir).join(', ')}`);
  t.true(real < limit + 64 * 1024, `${what}: ${real} bytes on disk`);
}

test('a 10 GiB vDisk with nothing written takes about 0 bytes in the write cache and the backend', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/empty', 0o644, 0, 0, 10 * GiB);
  const v = pool.vdisk('/empty');
  t.is(v.size, 10 * GiB);
  t.is(v.allocatedBytes, 0);
  t.is(pool.stat('/empty').allocatedBytes, 0);
  // reads of holes cost nothing either
  t.true((await v.read(5 * GiB, 64 * 1024)).equals(Buffer.alloc(64 * 1024)));
  t.true((await v.read(10 * GiB - CS, CS)).equals(Buffer.alloc(CS)));
  const wc = path.join(env.state, 'wc');
  checkSmall(t, wc, 'write cache, open');
  await pool.syncToBackend();
  checkSmall(t, env.backendDir, 'backend after syncToBackend');
  checkSmall(t, wc, 'write cache after syncToBackend');
  t.deepEqual(v.info().uploadBacklog, { scos: 0, tlogs: 0 });
  t.is(v.info().backendBytes, 0);
  t.is(v.info().dirtyBytes, 0);
  await env.close(pool);
  checkSmall(t, env.backendDir, 'backend after close');
  checkSmall(t, wc, 'write cache after close');
  t.is(treeBytes(path.join(env.state, 'rc')), 0, 'read cache');
  t.deepEqual(listFiles(env.backendDir).filter((f) => f.includes('/sco/')), [], 'no SCO in the backend');
  // and it comes back from the backend alone as the same empty 10 GiB vDisk
  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open();
  t.is(again.vdisk('/empty').size, 10 * GiB);
  t.is(again.vdisk('/empty').allocatedBytes, 0);
  checkSmall(t, wc, 'write cache after a backend restart');
});

test('allocatedBytes follows the clusters really written, across restarts', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/t', 0o644, 0, 0, 10 * GiB);
  let v = pool.vdisk('/t');
  const alloc = (n: number, what: string): void => {
    t.is(v.allocatedBytes, n * CS, what);
    t.is(pool.stat('/t').allocatedBytes, n * CS, `stat: ${what}`);
    t.is(v.info().allocatedBytes, n * CS, `info: ${what}`);
  };
  await v.write(GiB, pattern(1, CS));
  alloc(1, 'one aligned 4 KiB write');
  await v.write(3 * GiB + 17, Buffer.from([7]));
  alloc(2, 'plus an unaligned 1-byte write');
  await v.write(GiB, pattern(2, CS));
  await v.write(3 * GiB + 18, Buffer.from([8]));
  alloc(2, 'overwrites take nothing more');
  await v.write(5 * GiB - 1, Buffer.from([1, 2]));
  alloc(4, 'plus 2 bytes across a cluster boundary');
  await v.write(7 * GiB, Buffer.alloc(CS)); // zeros written are still written
  alloc(5, 'plus a cluster of zeros');
  t.is(v.size, 10 * GiB, 'writes inside the size do not change it');
  // the write cache holds those 5 clusters (and a few more for the overwrites), not gigabytes
  t.true(treeBytes(path.join(env.state, 'wc')) < SMALL + 8 * SLOT_SIZE);
  await env.close(pool);
  t.true(treeBytes(env.backendDir) < SMALL + 8 * SLOT_SIZE, `backend: ${treeBytes(env.backendDir)} bytes`);
  pool = await env.open();
  v = pool.vdisk('/t');
  alloc(5, 'after a local restart');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  v = pool.vdisk('/t');
  alloc(5, 'after a backend restart');
  t.true((await v.read(3 * GiB + 17, 2)).equals(Buffer.from([7, 8])));
  t.true((await v.read(5 * GiB - 1, 2)).equals(Buffer.from([1, 2])));
});

async function expectZeros(t: ExecutionContext, v: VDisk, offset: number, length: number, what: string): Promise<void> {
  const got = await v.read(offset, length);
  t.is(got.length, length, `${what}: length`);
  const nonzero = got.findIndex((b) => b !== 0);
  t.is(nonzero, -1, `${what}: byte ${offset + nonzero} is not zero`);
}

test('a write that grows the vDisk after a shrink: the old boundary cluster reads zeros past the old size, wherever the write lands', async (t) => {
  const env = poolEnv(t);
  const pool: VPool = await env.open();
  t.teardown(() => env.close(pool));
  for (const [name, at] of [['same cluster', 5 * CS + 300], ['a later cluster', 9 * CS + 10]] as const) {
    const p = `/g-${name.replace(/ /g, '-')}`;
    await pool.createFile(p, 0o644, 0, 0, 0);
    const v = pool.vdisk(p);
    const data = pattern(4, 8 * CS);
    await v.write(0, data);
    const keep = 5 * CS + 100;
    await v.resize(keep); // the shrink leaves cluster 5's bytes past 100 as they were (resizeLocked)
    await v.write(at, Buffer.alloc(50, 0xee)); // grows the vDisk again
    t.true((await v.read(0, keep)).equals(data.subarray(0, keep)), `${name}: the kept part`);
    await expectZeros(t, v, keep, at - keep, `${name}: between the old size and the write`);
    t.true((await v.read(at, 50)).equals(Buffer.alloc(50, 0xee)), `${name}: the write`);
  }
});

test('shrink then grow reads zeros, also in the tail of the kept boundary cluster; a shrink drops allocatedBytes', async (t) => {
  const env = poolEnv(t);
  let pool: VPool = await env.open();
  await pool.createFile('/s', 0o644, 0, 0, 0);
  let v = pool.vdisk('/s');
  const data = pattern(3, 20 * CS); // 20 clusters: across SCOs of 8 clusters
  await v.write(0, data);
  t.is(v.allocatedBytes, 20 * CS);
  await v.syncToBackend(); // the first SCOs are in the backend: the shrink must hold there too

  const keep = 5 * CS + 100; // clusters 0..4 whole, 100 bytes of cluster 5
  await v.resize(keep);
  t.is(v.size, keep);
  t.is(v.allocatedBytes, 6 * CS, 'clusters past the boundary cluster are given back');
  t.is((await v.read(0, 30 * CS)).length, keep, 'a read is cut at the new size');
  await v.resize(30 * CS);
  t.is(v.allocatedBytes, 6 * CS, 'growing allocates nothing');
  const check = async (what: string): Promise<void> => {
    t.is(v.size, 30 * CS, `${what}: size`);
    t.is(v.allocatedBytes, 6 * CS, `${what}: allocated`);
    t.true((await v.read(0, keep)).equals(data.subarray(0, keep)), `${what}: the kept part`);
    await expectZeros(t, v, keep, 6 * CS - keep, `${what}: the tail of the boundary cluster`);
    await expectZeros(t, v, 6 * CS, 24 * CS, `${what}: the regrown clusters`);
  };
  await check('after shrink and grow');
  await env.close(pool);
  pool = await env.open();
  v = pool.vdisk('/s');
  await check('after a local restart');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  v = pool.vdisk('/s');
  await check('after a backend restart');

  // a shrink onto a cluster boundary keeps no partial cluster; to 0 gives everything back
  await v.resize(2 * CS);
  t.is(v.allocatedBytes, 2 * CS);
  await v.resize(0);
  t.is(v.allocatedBytes, 0);
  t.is(pool.stat('/s').allocatedBytes, 0);
  await v.resize(8 * CS);
  await expectZeros(t, v, 0, 8 * CS, 'grown from 0');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  v = pool.vdisk('/s');
  t.is(v.size, 8 * CS);
  t.is(v.allocatedBytes, 0, 'after a shrink to 0, a grow and a backend restart');
  await expectZeros(t, v, 0, 8 * CS, 'grown from 0, after a backend restart');
});

test('a shrink of the open SCO clusters then a write past them keeps old data from coming back', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/r', 0o644, 0, 0, 0);
  let v = pool.vdisk('/r');
  await v.write(0, pattern(4, 3 * CS)); // all in the open SCO, nothing shipped
  await v.resize(CS);
  await v.write(4 * CS, pattern(5, CS)); // grows past the discarded clusters 1 and 2
  const want = Buffer.concat([pattern(4, CS), Buffer.alloc(3 * CS), pattern(5, CS)]);
  t.true((await v.read(0, 5 * CS)).equals(want));
  t.is(v.allocatedBytes, 2 * CS);
  await env.close(pool);
  for (const how of ['local', 'backend']) {
    if (how === 'backend') fs.rmSync(env.state, { recursive: true, force: true });
    pool = await env.open();
    v = pool.vdisk('/r');
    t.is(v.size, 5 * CS, `${how} restart: size`);
    t.is(v.allocatedBytes, 2 * CS, `${how} restart: allocated`);
    t.true((await v.read(0, 5 * CS)).equals(want), `${how} restart: contents`);
    await env.close(pool);
  }
});

test('a removed vDisk leaves nothing behind: not in the write cache, the read cache, the metadata or the backend', async (t) => {
  const env = poolEnv(t);
  let pool = await env.open();
  await pool.createFile('/keep', 0o644, 0, 0, 0);
  await pool.createFile('/gone', 0o644, 0, 0, 0);
  await pool.vdisk('/keep').write(0, pattern(20, 4 * CS));
  const v = pool.vdisk('/gone');
  const id = v.info().id;
  await v.write(0, pattern(21, 40 * CS));
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await copyInBackend(t, env) }); // pieces copied in, not read in place
  t.true((await pool.vdisk('/gone').read(0, 40 * CS)).equals(pattern(21, 40 * CS))); // fills the read cache
  t.true(fs.readdirSync(path.join(env.state, 'rc')).some((n) => n.includes(id)), 'read-cache pieces of /gone exist');
  await pool.unlink('/gone');
  t.deepEqual(pool.readdir('/'), ['keep']);
  await env.close(pool); // waits for the backend removals
  const mine = (files: string[]): string[] => files.filter((f) => f.includes(id));
  t.deepEqual(mine(listFiles(env.backendDir)), [], 'no object of /gone in the backend');
  t.deepEqual(mine(listFiles(path.join(env.state, 'wc'))), [], 'no file of /gone in the write cache');
  t.false(fs.existsSync(path.join(env.state, 'wc', id)), 'no write-cache directory of /gone');
  t.deepEqual(mine(fs.readdirSync(path.join(env.state, 'rc'))), [], 'no read-cache piece of /gone');
  const mds = openMetadataStore('lmdb', path.join(env.state, 'mds'));
  const keys = [...mds.range('')].map(([k]) => k);
  const left = keys.filter((k) => k.includes(id));
  await mds.close();
  t.true(keys.some((k) => k.startsWith('vd/')), 'the metadata of /keep is there (the scan works)');
  t.deepEqual(left, [], 'no metadata record of /gone');
  // and /keep is whole, also from the backend alone
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open();
  t.deepEqual(pool.readdir('/'), ['keep']);
  t.true((await pool.vdisk('/keep').read(0, 4 * CS)).equals(pattern(20, 4 * CS)));
});
