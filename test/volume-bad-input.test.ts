/**
 * Bad input to the volume layer: every malformed offset, length or size is a clear INVALID or TOO_BIG,
 * every bad path a clear tree error, zero-length I/O is a no-op — and after each bad call the vDisk holds
 * exactly what it held before (also after a restart, so a bad call cannot have journaled anything).
 */
import test, { type ExecutionContext } from 'ava';
import { MAX_VDISK_SIZE, type VDisk, type VPool } from '../volume/types.js';
import { CS, pattern, poolEnv } from './helpers/vpool.js';
import fs from 'node:fs';
import path from 'node:path';

const BAD_NUMBERS: Array<[string, unknown]> = [
  ['-1', -1],
  ['-4096', -4096],
  ['0.5', 0.5],
  ['4096.25', 4096.25],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['2^53', 2 ** 53],
  ['2^53 + 2', 2 ** 53 + 2],
  ['1e300', 1e300],
  ['-0.0001', -0.0001],
  ['a string', '4096'],
  ['undefined', undefined],
  ['a bigint', 4096n],
];

/** The code a call failed with, whether it threw at once or rejected; undefined if it succeeded. */
async function failure(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    return (err as { code?: string }).code ?? `not a VolumeError: ${String(err)}`;
  }
  return undefined;
}

interface Snapshot {
  size: number;
  allocated: number;
  bytes: Buffer;
}

async function snapshot(v: VDisk): Promise<Snapshot> {
  return { size: v.size, allocated: v.allocatedBytes, bytes: await v.read(0, v.size) };
}

async function same(t: ExecutionContext, v: VDisk, before: Snapshot, after: string): Promise<void> {
  t.is(v.size, before.size, `size after ${after}`);
  t.is(v.allocatedBytes, before.allocated, `allocated bytes after ${after}`);
  const now = await v.read(0, v.size);
  t.true(now.equals(before.bytes), `contents after ${after}`);
}

/** A vDisk /d of 5 clusters and a bit, with data in clusters 0, 1 (unaligned) and 4. */
async function populated(t: ExecutionContext): Promise<{ env: ReturnType<typeof poolEnv>; pool: VPool; v: VDisk; before: Snapshot }> {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/d', 0o644, 0, 0, 5 * CS + 100);
  const v = pool.vdisk('/d');
  await v.write(0, pattern(1, CS));
  await v.write(CS + 17, pattern(2, 3000));
  await v.write(4 * CS, pattern(3, CS + 100));
  const before = await snapshot(v);
  t.is(before.size, 5 * CS + 100);
  t.is(before.allocated, 4 * CS);
  return { env, pool, v, before };
}

test('bad offsets, lengths and sizes are INVALID and change nothing, also after a restart', async (t) => {
  const { env, pool, v, before } = await populated(t);
  const data = pattern(9, 100);
  for (const [name, bad] of BAD_NUMBERS) {
    t.is(await failure(() => v.read(bad as number, 10)), 'INVALID', `read offset ${name}`);
    t.is(await failure(() => v.read(0, bad as number)), 'INVALID', `read length ${name}`);
    t.is(await failure(() => v.write(bad as number, data)), 'INVALID', `write offset ${name}`);
    t.is(await failure(() => v.write(bad as number, new Uint8Array(0))), 'INVALID', `zero-length write at offset ${name}`);
    t.is(await failure(() => v.resize(bad as number)), 'INVALID', `resize ${name}`);
  }
  await same(t, v, before, 'the bad calls');
  await env.close(pool);
  const again = await env.open();
  await same(t, again.vdisk('/d'), before, 'the bad calls and a restart');
});

test('bad arguments reject the returned promise instead of throwing synchronously', async (t) => {
  const { v } = await populated(t);
  // a caller chaining .catch() on the returned promise must see every error there
  for (const call of [() => v.write(-1, Buffer.alloc(1)), () => v.write(MAX_VDISK_SIZE, Buffer.alloc(1)), () => v.resize(NaN), () => v.resize(MAX_VDISK_SIZE + 1), () => v.read(-1, 1)]) {
    let p: Promise<unknown> | undefined;
    t.notThrows(() => { p = call(); }, call.toString());
    if (p !== undefined) await t.throwsAsync(p, { instanceOf: Error }, call.toString());
  }
});

test('beyond 64 TiB: resizes and writes ending past it are TOO_BIG and change nothing', async (t) => {
  const { env, pool, v, before } = await populated(t);
  const big: Array<[string, () => Promise<unknown>]> = [
    ['resize to 64 TiB + 1', () => v.resize(MAX_VDISK_SIZE + 1)],
    ['resize to 2^53 - 1', () => v.resize(2 ** 53 - 1)],
    ['resize to 128 TiB', () => v.resize(2 * MAX_VDISK_SIZE)],
    ['write of 1 byte at 64 TiB', () => v.write(MAX_VDISK_SIZE, Buffer.alloc(1))],
    ['write of 2 bytes ending 1 past 64 TiB', () => v.write(MAX_VDISK_SIZE - 1, Buffer.alloc(2))],
    ['write of 8 KiB straddling 64 TiB', () => v.write(MAX_VDISK_SIZE - CS, Buffer.alloc(2 * CS))],
    ['write at 2^53 - 1', () => v.write(2 ** 53 - 1, Buffer.alloc(1))],
  ];
  for (const [name, call] of big) t.is(await failure(call), 'TOO_BIG', name);
  await same(t, v, before, 'the TOO_BIG calls');
  await env.close(pool);
  const again = await env.open();
  await same(t, again.vdisk('/d'), before, 'the TOO_BIG calls and a restart');
});

test('zero-length reads and writes work and change nothing; reads past the end are cut to the size', async (t) => {
  const { env, pool, v, before } = await populated(t);
  for (const off of [0, 1, CS, before.size - 1, before.size, before.size + 1, 2 ** 40, MAX_VDISK_SIZE, 2 ** 53 - 1]) {
    t.is((await v.read(off, 0)).length, 0, `zero-length read at ${off}`);
    if (off > MAX_VDISK_SIZE) continue; // (a zero-length write beyond 64 TiB may be TOO_BIG)
    await v.write(off, Buffer.alloc(0));
    await v.write(off, new Uint8Array(0));
  }
  await same(t, v, before, 'zero-length I/O');
  t.is((await v.read(before.size, 100)).length, 0, 'read at the end');
  t.is((await v.read(before.size + CS, CS)).length, 0, 'read past the end');
  t.is((await v.read(2 ** 50, CS)).length, 0, 'read far past the end');
  const tail = await v.read(before.size - 10, 1000);
  t.is(tail.length, 10, 'a read across the end is cut to the size');
  t.true(tail.equals(before.bytes.subarray(before.size - 10)));
  const all = await v.read(0, 2 ** 53 - 1);
  t.true(all.equals(before.bytes), 'a read of a huge length returns the whole vDisk');
  await env.close(pool);
  const again = await env.open();
  await same(t, again.vdisk('/d'), before, 'zero-length I/O and a restart');
});

test('a write ending exactly at 64 TiB works, grows the vDisk to 64 TiB and survives a restart', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/big', 0o644, 0, 0, 0);
  const v = pool.vdisk('/big');
  const last = pattern(5, CS);
  await v.write(MAX_VDISK_SIZE - CS, last);
  t.is(v.size, MAX_VDISK_SIZE);
  t.is(v.allocatedBytes, CS);
  const odd = pattern(6, 5000);
  await v.write(MAX_VDISK_SIZE - 2 * CS - 904, odd); // unaligned: the last 904 bytes of one cluster and the whole next one
  const expectEnd = Buffer.alloc(3 * CS);
  last.copy(expectEnd, 2 * CS);
  odd.copy(expectEnd, CS - 904);
  const got = await v.read(MAX_VDISK_SIZE - 3 * CS, 10 * CS);
  t.is(got.length, 3 * CS, 'the read is cut at 64 TiB');
  t.true(got.equals(expectEnd));
  t.is(v.allocatedBytes, 3 * CS);
  await v.write(MAX_VDISK_SIZE, Buffer.alloc(0));
  t.is(v.size, MAX_VDISK_SIZE);
  await v.resize(MAX_VDISK_SIZE); // the same size: fine
  t.is((await v.read(0, CS)).equals(Buffer.alloc(CS)), true, 'the start is a hole');
  await env.close(pool);
  // a backend restart too: the map entry 2^34 - 1 must come back from the TLogs
  fs.rmSync(env.state, { recursive: true, force: true });
  const again = await env.open();
  const w = again.vdisk('/big');
  t.is(w.size, MAX_VDISK_SIZE);
  t.is(w.allocatedBytes, 3 * CS);
  t.true((await w.read(MAX_VDISK_SIZE - 3 * CS, 3 * CS)).equals(expectEnd));
});

test('bad paths and tree misuse are clear errors and leave the tree and the data alone', async (t) => {
  const { env, pool, v, before } = await populated(t);
  await pool.mkdir('/dir', 0o755, 0, 0);
  await pool.createFile('/dir/f', 0o644, 0, 0, 0);
  const name255 = 'n'.repeat(255);
  const name256 = 'n'.repeat(256);
  const cases: Array<[string, () => Promise<unknown> | unknown, string]> = [
    ['createFile of a relative path', () => pool.createFile('rel', 0o644, 0, 0), 'INVALID'],
    ['createFile of an empty path', () => pool.createFile('', 0o644, 0, 0), 'INVALID'],
    ['createFile with ..', () => pool.createFile('/dir/../x', 0o644, 0, 0), 'INVALID'],
    ['createFile with .', () => pool.createFile('/dir/./x', 0o644, 0, 0), 'INVALID'],
    ['createFile named ..', () => pool.createFile('/..', 0o644, 0, 0), 'INVALID'],
    ['createFile with NUL', () => pool.createFile('/a\0b', 0o644, 0, 0), 'INVALID'],
    ['createFile of the root', () => pool.createFile('/', 0o644, 0, 0), 'INVALID'],
    ['createFile with a 256-byte name', () => pool.createFile('/' + name256, 0o644, 0, 0), 'NAME_TOO_LONG'],
    ['createFile with a 256-byte UTF-8 name', () => pool.createFile('/' + 'é'.repeat(128), 0o644, 0, 0), 'NAME_TOO_LONG'],
    ['mkdir with a 256-byte name', () => pool.mkdir('/dir/' + name256, 0o755, 0, 0), 'NAME_TOO_LONG'],
    ['stat with a 256-byte name', () => pool.stat('/' + name256), 'NAME_TOO_LONG'],
    ['createFile on an existing file', () => pool.createFile('/d', 0o644, 0, 0), 'EXISTS'],
    ['createFile on an existing dir', () => pool.createFile('/dir', 0o644, 0, 0), 'EXISTS'],
    ['mkdir on an existing file', () => pool.mkdir('/d', 0o755, 0, 0), 'EXISTS'],
    ['createFile below a file', () => pool.createFile('/d/x', 0o644, 0, 0), 'NOT_DIR'],
    ['createFile in a missing dir', () => pool.createFile('/nope/x', 0o644, 0, 0), 'NOT_FOUND'],
    ['rmdir of a non-empty dir', () => pool.rmdir('/dir'), 'NOT_EMPTY'],
    ['rmdir of a file', () => pool.rmdir('/d'), 'NOT_DIR'],
    ['rmdir of the root', () => pool.rmdir('/'), 'BUSY'],
    ['unlink of a dir', () => pool.unlink('/dir'), 'IS_DIR'],
    ['unlink of a missing file', () => pool.unlink('/missing'), 'NOT_FOUND'],
    ['rename a dir into itself', () => pool.rename('/dir', '/dir/inside'), 'INVALID'],
    ['rename a dir below its own child', () => pool.mkdir('/dir/sub', 0o755, 0, 0).then(() => pool.rename('/dir', '/dir/sub/deeper')), 'INVALID'],
    ['rename a file over a non-empty dir', () => pool.rename('/d', '/dir'), 'IS_DIR'],
    ['rename a missing file', () => pool.rename('/missing', '/x'), 'NOT_FOUND'],
    ['rename to a 256-byte name', () => pool.rename('/d', '/' + name256), 'NAME_TOO_LONG'],
    ['vdisk() of a dir', () => pool.vdisk('/dir'), 'IS_DIR'],
    ['vdisk() of a relative path', () => pool.vdisk('d'), 'INVALID'],
  ];
  for (const [name, call, code] of cases) t.is(await failure(call as () => unknown), code, name);
  t.deepEqual(pool.readdir('/').sort(), ['d', 'dir']);
  t.deepEqual(pool.readdir('/dir').sort(), ['f', 'sub']);
  t.is(pool.vdisk('/d'), v, 'the same vDisk object');
  await same(t, v, before, 'the bad tree calls');
  // a 255-byte name is fine
  await pool.createFile('/' + name255, 0o644, 0, 0, CS);
  t.is(pool.stat('/' + name255).size, CS);
  await env.close(pool);
  const again = await env.open();
  t.deepEqual(again.readdir('/').sort(), ['d', 'dir', name255].sort());
  await same(t, again.vdisk('/d'), before, 'the bad tree calls and a restart');
});

test('createFile with a bad size fails and leaves no vDisk behind', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  const cases: Array<[string, number, string]> = [
    ['-1', -1, 'INVALID'],
    ['NaN', NaN, 'INVALID'],
    ['0.5', 0.5, 'INVALID'],
    ['64 TiB + 1', MAX_VDISK_SIZE + 1, 'TOO_BIG'],
  ];
  for (const [name, size, code] of cases) {
    t.is(await failure(() => pool.createFile('/x', 0o644, 0, 0, size)), code, `createFile of size ${name}`);
    t.deepEqual(pool.readdir('/'), [], `no /x after size ${name}`);
    if (pool.readdir('/').length > 0) await pool.unlink('/x'); // go on with the other cases
  }
  // nor any local state of a vDisk that does not exist
  t.deepEqual(fs.readdirSync(path.join(env.state, 'wc')), [], 'no orphan write-cache directory');
  await pool.createFile('/x', 0o644, 0, 0, MAX_VDISK_SIZE);
  t.is(pool.stat('/x').size, MAX_VDISK_SIZE);
  t.is(fs.readdirSync(path.join(env.state, 'wc')).length, 1);
});

test('calls on a removed vDisk or a closed vPool are CLOSED, not a crash', async (t) => {
  const env = poolEnv(t);
  const pool = await env.open();
  await pool.createFile('/a', 0o644, 0, 0, CS);
  await pool.createFile('/b', 0o644, 0, 0, CS);
  const a = pool.vdisk('/a');
  await a.write(0, pattern(1, CS));
  await pool.unlink('/a');
  t.is(await failure(() => a.read(0, CS)), 'CLOSED', 'read of a removed vDisk');
  t.is(await failure(() => a.write(0, pattern(2, CS))), 'CLOSED', 'write to a removed vDisk');
  t.is(await failure(() => a.resize(2 * CS)), 'CLOSED', 'resize of a removed vDisk');
  t.is(await failure(() => a.sync()), 'CLOSED', 'sync of a removed vDisk');
  t.is(await failure(() => pool.vdisk('/a')), 'NOT_FOUND');
  const b = pool.vdisk('/b');
  await env.close(pool);
  t.is(await failure(() => pool.createFile('/c', 0o644, 0, 0)), 'CLOSED', 'createFile on a closed vPool');
  t.is(await failure(() => pool.mkdir('/d', 0o755, 0, 0)), 'CLOSED', 'mkdir on a closed vPool');
  t.is(await failure(() => b.write(0, pattern(3, CS))), 'CLOSED', 'write to a vDisk of a closed vPool');
  t.is(await failure(() => b.read(0, CS)), 'CLOSED', 'read of a vDisk of a closed vPool');
});
