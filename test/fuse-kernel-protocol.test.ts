/**
 * The kernel engine's raw protocol layer against golden bytes: every request body vpoolfs decodes and
 * every reply it encodes, built here by hand from the struct layouts of /usr/include/linux/fuse.h (not
 * from fuse/kernel/protocol.ts), so that a wrong offset or size in the engine shows up as a byte diff.
 * Then the session's dispatch (fuse/kernel/session.ts) with a regular file standing in for /dev/fuse and
 * in-memory handlers: unknown opcodes answer ENOSYS, malformed bodies EINVAL, FORGET and INTERRUPT nothing.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { C } from '../fuse/kernel/counters.js';
import { decode, decodeHeader } from '../fuse/kernel/decode.js';
import * as enc from '../fuse/kernel/encode.js';
import { negotiate } from '../fuse/kernel/ops-session.js';
import { Session } from '../fuse/kernel/session.js';
import type { NodeStat, StatFs } from '../volume/types.js';
import { rootLogger } from '../util/log.js';

rootLogger.silent = true;

/** Packs little-endian fields: [bytes, value] for integers (2, 4, 8), or a string (UTF-8, as is). */
type Field = [2 | 4 | 8, number | bigint] | string | Buffer;
function le(...fields: Field[]): Buffer {
  const parts = fields.map((f) => {
    if (typeof f === 'string') return Buffer.from(f, 'utf8');
    if (Buffer.isBuffer(f)) return f;
    const [n, v] = f;
    const b = Buffer.alloc(n);
    if (n === 2) b.writeUInt16LE(Number(v));
    else if (n === 4) (Number(v) < 0 ? b.writeInt32LE(Number(v)) : b.writeUInt32LE(Number(v)));
    else b.writeBigInt64LE(BigInt(v));
    return b;
  });
  return Buffer.concat(parts);
}
const u16 = (v: number): Field => [2, v];
const u32 = (v: number): Field => [4, v];
const u64 = (v: number | bigint): Field => [8, v];
const pad = (n: number): Buffer => Buffer.alloc(n);

/** fuse_in_header (40 bytes) + body; len is filled in. */
function request(opcode: number, unique: number, nodeid: number, ...body: Field[]): Buffer {
  const b = le(...body);
  return Buffer.concat([le(u32(40 + b.length), u32(opcode), u64(unique), u64(nodeid), u32(1000), u32(1001), u32(4242), u16(0), u16(0)), b]);
}
/** fuse_out_header (16 bytes) + body. */
function reply(error: number, unique: number, ...body: Field[]): Buffer {
  const b = le(...body);
  return Buffer.concat([le(u32(16 + b.length), [4, error], u64(unique)), b]);
}

const st: NodeStat = {
  kind: 'file', ino: 77, mode: 0o640, uid: 1000, gid: 1001, size: 10 * 2 ** 30 + 5, allocatedBytes: 8192, nlink: 1,
  atimeMs: 1_700_000_000_123.5, mtimeMs: 1_700_000_001_000, ctimeMs: 1_700_000_002_999,
};
/** fuse_attr (88 bytes) of `st`. */
const attrBytes = (): Field[] => [
  u64(77), u64(10 * 2 ** 30 + 5), u64(16), u64(1_700_000_000), u64(1_700_000_001), u64(1_700_000_002),
  u32(123_500_000), u32(0), u32(999_000_000), u32(0o100640), u32(1), u32(1000), u32(1001), u32(0), u32(4096), u32(0),
];

test('fuse_in_header', (t) => {
  const b = request(16, 0x1_0000_0002, 9);
  t.deepEqual(decodeHeader(b), { len: 40, opcode: 16, unique: 0x1_0000_0002, nodeid: 9, uid: 1000, gid: 1001, pid: 4242 });
  t.throws(() => decodeHeader(b.subarray(0, 39)));
});

test('request bodies decode field by field', (t) => {
  t.deepEqual(decode.init(request(26, 2, 0, u32(7), u32(45), u32(131072), u32(0x3fffffff), u32(0x1), pad(44))), { major: 7, minor: 45, maxReadahead: 131072, flags: 0x3fffffff, flags2: 1 });
  t.deepEqual(decode.name(request(1, 4, 1, 'disk\0')), { name: 'disk' });
  t.deepEqual(decode.forget(request(2, 6, 9, u64(3))), { nlookup: 3 });
  t.deepEqual(decode.batchForget(request(42, 8, 0, u32(2), u32(0), u64(9), u64(1), u64(10), u64(5))), { items: [{ nodeid: 9, nlookup: 1 }, { nodeid: 10, nlookup: 5 }] });
  t.deepEqual(decode.getattr(request(3, 10, 9, u32(1), u32(0), u64(12))), { flags: 1, fh: 12 });
  t.deepEqual(
    decode.setattr(request(4, 12, 9, u32(0x1ff), u32(0), u64(3), u64(2 ** 33), u64(0), u64(1_600_000_000), u64(1_600_000_001), u64(0), u32(5), u32(6), u32(0), u32(0o4755), u32(0), u32(1000), u32(1001), u32(0))),
    { valid: 0x1ff, fh: 3, size: 2 ** 33, atime: 1_600_000_000, mtime: 1_600_000_001, atimensec: 5, mtimensec: 6, mode: 0o4755, uid: 1000, gid: 1001 },
  );
  t.deepEqual(decode.mknod(request(8, 14, 1, u32(0o100644), u32(0), u32(0o22), u32(0), 'f\0')), { mode: 0o100644, rdev: 0, umask: 0o22, name: 'f' });
  t.deepEqual(decode.mkdir(request(9, 16, 1, u32(0o755), u32(0o22), 'dir\0')), { mode: 0o755, umask: 0o22, name: 'dir' });
  t.deepEqual(decode.rename(request(12, 18, 1, u64(5), 'a\0', 'b\0')), { newdir: 5, flags: 0, oldname: 'a', newname: 'b' });
  t.deepEqual(decode.rename2(request(45, 20, 1, u64(5), u32(1), u32(0), 'a\0', 'bé\0')), { newdir: 5, flags: 1, oldname: 'a', newname: 'bé' });
  t.deepEqual(decode.open(request(14, 22, 9, u32(0o100002), u32(0))), { flags: 0o100002, openFlags: 0 });
  t.deepEqual(decode.create(request(35, 24, 1, u32(0o101), u32(0o100600), u32(0o22), u32(0), 'new\0')), { flags: 0o101, mode: 0o100600, umask: 0o22, openFlags: 0, name: 'new' });
  t.deepEqual(decode.release(request(18, 26, 9, u64(4), u32(2), u32(1), u64(0))), { fh: 4, flags: 2, releaseFlags: 1 });
  t.deepEqual(decode.flush(request(25, 28, 9, u64(4), u32(0), u32(0), u64(77))), { fh: 4 });
  t.deepEqual(decode.read(request(15, 30, 9, u64(4), u64(2 ** 40), u32(131072), u32(0), u64(0), u32(0o100000), u32(0))), { fh: 4, offset: 2 ** 40, size: 131072, readFlags: 0, flags: 0o100000 });
  const w = decode.write(request(16, 32, 9, u64(4), u64(8192), u32(5), u32(4), u64(0), u32(0o40002), u32(0), 'hello'));
  t.deepEqual({ ...w, data: w.data.toString() }, { fh: 4, offset: 8192, size: 5, writeFlags: 4, flags: 0o40002, data: 'hello' });
  t.throws(() => decode.write(request(16, 32, 9, u64(4), u64(0), u32(6), u32(0), u64(0), u32(0), u32(0), 'hello')), undefined, 'data shorter than size');
  t.deepEqual(decode.fsync(request(20, 34, 9, u64(4), u32(1), u32(0))), { fh: 4, fsyncFlags: 1 });
  const sx = decode.setxattr(request(21, 36, 9, u32(3), u32(1), 'user.x\0', 'abc'));
  t.deepEqual({ ...sx, value: sx.value.toString() }, { size: 3, flags: 1, name: 'user.x', value: 'abc' });
  t.deepEqual(decode.getxattr(request(22, 38, 9, u32(0), u32(0), 'security.capability\0')), { size: 0, name: 'security.capability' });
  t.deepEqual(decode.listxattr(request(23, 40, 9, u32(4096), u32(0))), { size: 4096 });
  t.deepEqual(decode.access(request(34, 42, 9, u32(4), u32(0))), { mask: 4 });
  t.deepEqual(decode.interrupt(request(36, 44, 0, u64(30))), { unique: 30 });
  t.deepEqual(decode.fallocate(request(43, 46, 9, u64(4), u64(4096), u64(2 ** 32), u32(3), u32(0))), { fh: 4, offset: 4096, length: 2 ** 32, mode: 3 });
  t.deepEqual(decode.lseek(request(46, 48, 9, u64(4), u64(12288), u32(4), u32(0))), { fh: 4, offset: 12288, whence: 4 });
  t.throws(() => decode.lseek(request(46, 48, 9, u64(4))), undefined, 'a body too short');
});

test('replies encode to the fuse.h layouts', (t) => {
  t.deepEqual(enc.errorReply(7, -2), reply(-2, 7));
  t.deepEqual(enc.emptyReply(7), reply(0, 7));
  t.deepEqual(enc.dataReply(7, Buffer.from('xyz')), reply(0, 7, 'xyz'));
  t.deepEqual(enc.entryReply(9, 12, st, 1, 2), reply(0, 9, u64(12), u64(0), u64(1), u64(2), u32(0), u32(0), ...attrBytes()));
  t.deepEqual(enc.attrReply(9, st, 1), reply(0, 9, u64(1), u32(0), u32(0), ...attrBytes()));
  t.deepEqual(enc.attrReply(9, { ...st, kind: 'dir', mode: 0o755, size: 4096 }, 1).readUInt32LE(16 + 16 + 60), 0o40755);
  t.deepEqual(enc.openReply(11, 5, 0x42), reply(0, 11, u64(5), u32(0x42), u32(0)));
  t.deepEqual(enc.createReply(13, 12, st, 1, 1, 6, 0x2), reply(0, 13, u64(12), u64(0), u64(1), u64(1), u32(0), u32(0), ...attrBytes(), u64(6), u32(2), u32(0)));
  t.deepEqual(enc.writeReply(15, 1 << 20), reply(0, 15, u32(1 << 20), u32(0)));
  t.deepEqual(enc.xattrSizeReply(17, 300), reply(0, 17, u32(300), u32(0)));
  t.deepEqual(enc.lseekReply(19, 2 ** 40), reply(0, 19, u64(2 ** 40)));
  const fsStat: StatFs = { blockSize: 4096, totalBlocks: 2 ** 34, freeBlocks: 2 ** 33, files: 10, freeFiles: 1e9, nameMax: 255 };
  t.deepEqual(enc.statfsReply(21, fsStat), reply(0, 21, u64(2 ** 34), u64(2 ** 33), u64(2 ** 33), u64(1e9 + 10), u64(1e9), u32(4096), u32(255), u32(4096), u32(0), pad(24)));
  const r = negotiate({ major: 7, minor: 45, maxReadahead: 131072, flags: 0xffffffff });
  t.deepEqual(
    enc.initReply(23, r),
    reply(0, 23, u32(7), u32(38), u32(131072), u32(r.flags), u16(64), u16(48), u32(1 << 20), u32(1), u16(256), u16(0), u32(0), pad(28)),
  );
  t.deepEqual(Buffer.concat([enc.replyHeader(25, 3), Buffer.from('abc')]), reply(0, 25, 'abc'));
  t.deepEqual(
    enc.direntsReply(27, [{ ino: 1, name: '.', kind: 'dir' }, { ino: 5, name: 'disk0', kind: 'file' }, { ino: 6, name: 'x', kind: 'unknown' }], 0, 4096),
    reply(0, 27, u64(1), u64(1), u32(1), u32(4), '.', pad(7), u64(5), u64(2), u32(5), u32(8), 'disk0', pad(3), u64(6), u64(3), u32(1), u32(0), 'x', pad(7)),
  );
  // from offset 1, with room for one 32-byte record only
  t.deepEqual(enc.direntsReply(29, [{ ino: 1, name: '.', kind: 'dir' }, { ino: 5, name: 'disk0', kind: 'file' }, { ino: 6, name: 'x', kind: 'file' }], 1, 40), reply(0, 29, u64(5), u64(2), u32(5), u32(8), 'disk0', pad(3)));
  t.deepEqual(enc.notifyInvalInode(12, 0, 0), reply(2, 0, u64(12), u64(0), u64(0)));
});

test('INIT asks only for what the kernel offers, never AUTO_INVAL_DATA or WRITEBACK_CACHE', (t) => {
  const all = negotiate({ major: 7, minor: 45, maxReadahead: 0, flags: 0xffffffff });
  const expected = (1 << 0) | (1 << 3) | (1 << 5) | (1 << 15) | (1 << 18) | (1 << 22) | (1 << 28);
  t.is(all.flags, expected);
  t.is(all.flags & (1 << 12), 0);
  t.is(all.flags & (1 << 16), 0);
  const some = negotiate({ major: 7, minor: 31, maxReadahead: 0, flags: (1 << 0) | (1 << 12) });
  t.is(some.flags, 1);
  t.is(some.minor, 31);
});

/** A Session whose "device" is a regular file: each reply is appended to it. */
function fakeSession(t: import('ava').ExecutionContext, ops: Record<string, (...a: any[]) => void>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-proto-'));
  const file = path.join(dir, 'dev');
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const s = new Session(fd, ops, false);
  let seen = 0;
  /** The bytes written since the last call. */
  const replies = (): Buffer => {
    const all = fs.readFileSync(file);
    const out = all.subarray(seen);
    seen = all.length;
    return out;
  };
  return { s, replies };
}

test('dispatch: unknown opcodes (STATX, SYMLINK, a made-up one) answer ENOSYS; nothing answers FORGET or INTERRUPT', (t) => {
  const { s, replies } = fakeSession(t, {});
  s.dispatch(request(52, 100, 1, pad(24)));
  t.deepEqual(replies(), reply(-38, 100));
  s.dispatch(request(6, 102, 1, 'a\0', 'b\0'));
  t.deepEqual(replies(), reply(-38, 102));
  s.dispatch(request(9999, 104, 1));
  t.deepEqual(replies(), reply(-38, 104));
  s.dispatch(request(2, 106, 9, u64(1)));
  s.dispatch(request(42, 108, 0, u32(1), u32(0), u64(9), u64(1)));
  s.dispatch(request(36, 110, 0, u64(104)));
  t.is(replies().length, 0);
});

test('dispatch: a malformed body answers EINVAL, a throwing handler EIO, and both go on serving', (t) => {
  const { s, replies } = fakeSession(t, {
    getattr: () => {
      throw new Error('boom');
    },
    statfs: (_p: string, cb: (c: number, s?: StatFs) => void) => cb(0, { blockSize: 4096, totalBlocks: 10, freeBlocks: 5, files: 1, freeFiles: 9, nameMax: 255 }),
  });
  s.dispatch(request(46, 200, 1, u64(1)));
  t.deepEqual(replies(), reply(-22, 200));
  s.dispatch(request(3, 202, 1, u32(0), u32(0), u64(0)));
  t.deepEqual(replies(), reply(-5, 202));
  s.dispatch(request(17, 204, 1));
  t.deepEqual(replies(), reply(0, 204, u64(10), u64(5), u64(5), u64(10), u64(9), u32(4096), u32(255), u32(4096), u32(0), pad(24)));
});

test('dispatch: held WRITEs gathered at the end of the turn; one whose handler throws answers EIO and the session lets go of its read buffer', async (t) => {
  let calls = 0;
  const { s, replies } = fakeSession(t, {
    write: (_p: string, _fh: number, _data: Buffer, size: number, _off: number, cb: (n: number) => void) => {
      if (calls++ === 0) throw new Error('boom');
      cb(size);
    },
  });
  // as if read by a reader thread: each request in its own transferred buffer, which goes back once answered
  const owners = (s as unknown as { owners: Map<ArrayBuffer, MessagePort> }).owners;
  const { port1: back, port2: recycled } = new MessageChannel();
  t.teardown(() => {
    back.close();
    recycled.close();
  });
  const fromReader = (b: Buffer): Buffer => {
    const ab = new ArrayBuffer(b.length);
    b.copy(Buffer.from(ab));
    owners.set(ab, back);
    return Buffer.from(ab);
  };
  const w1 = fromReader(request(16, 400, 1, u64(4), u64(0), u32(5), u32(0), u64(0), u32(0), u32(0), 'hello'));
  const w2 = fromReader(request(16, 402, 1, u64(4), u64(4096), u32(5), u32(0), u64(0), u32(0), u32(0), 'world'));
  Atomics.add(s.counters, C.POSTED, 2); // more requests wait for the main thread: the WRITEs are held
  s.dispatch(w1);
  s.dispatch(w2);
  t.is(replies().length, 0, 'both held');
  await new Promise((r) => setImmediate(r));
  t.deepEqual(replies(), Buffer.concat([reply(-5, 400), reply(0, 402, u32(5), u32(0))]));
  t.false(owners.has(w1.buffer as ArrayBuffer), "the throwing WRITE's buffer is not kept by the session");
  t.is(owners.size, 0);
  t.is((receiveMessageOnPort(recycled)?.message as ArrayBuffer | undefined)?.byteLength, 40 + 40 + 5, 'the answered WRITE\'s buffer went back');
  t.is(receiveMessageOnPort(recycled), undefined);
});

test('dispatch: LOOKUP hands out node ids by path, FORGET drops them, rename moves them, getxattr probes and ERANGE', (t) => {
  const stats = new Map<string, NodeStat>([['/d', { ...st, kind: 'dir', ino: 2 }], ['/d/f', { ...st, ino: 3 }]]);
  const { s, replies } = fakeSession(t, {
    getattr: (p: string, cb: (c: number, s?: NodeStat) => void) => (stats.has(p) ? cb(0, stats.get(p)) : cb(-2)),
    rename: (from: string, to: string, cb: (c: number) => void) => {
      stats.set(to, stats.get(from)!);
      stats.delete(from);
      cb(0);
    },
    getxattr: (_p: string, _n: string, _pos: number, cb: (c: number, v?: Buffer) => void) => cb(0, Buffer.from('0123456789')),
  });
  s.dispatch(request(1, 300, 1, 'd\0'));
  const d = replies();
  t.is(d.readInt32LE(4), 0);
  const dirId = Number(d.readBigUInt64LE(16));
  t.is(dirId, 2, 'first node id after root');
  s.dispatch(request(1, 302, dirId, 'f\0'));
  const fileId = Number(replies().readBigUInt64LE(16));
  s.dispatch(request(1, 304, dirId, 'f\0'));
  t.is(Number(replies().readBigUInt64LE(16)), fileId, 'same path, same node id');
  s.dispatch(request(1, 306, dirId, 'nope\0'));
  t.deepEqual(replies(), reply(-2, 306));
  s.dispatch(request(45, 308, dirId, u64(1), u32(0), u32(0), 'f\0', 'g\0'));
  t.deepEqual(replies(), reply(0, 308));
  t.is(s.nodes.path(fileId), '/g');
  s.dispatch(request(22, 310, fileId, u32(0), u32(0), 'user.big\0'));
  t.deepEqual(replies(), reply(0, 310, u32(10), u32(0)), 'size probe');
  s.dispatch(request(22, 312, fileId, u32(4), u32(0), 'user.big\0'));
  t.deepEqual(replies(), reply(-34, 312), 'ERANGE');
  s.dispatch(request(22, 314, fileId, u32(64), u32(0), 'user.big\0'));
  t.deepEqual(replies(), reply(0, 314, '0123456789'));
  s.dispatch(request(2, 316, fileId, u64(2)));
  t.is(s.nodes.path(fileId), undefined, 'forgotten after both lookups are given back');
  s.dispatch(request(3, 318, fileId, u32(0), u32(0), u64(0)));
  t.deepEqual(replies(), reply(-2, 318), 'a forgotten node is ENOENT');
});
