/**
 * Encoding of FUSE replies for /dev/fuse: the 16-byte fuse_out_header (len, error as a negative errno,
 * unique), then the reply struct of the opcode (layouts of /usr/include/linux/fuse.h). Each function
 * returns one Buffer, written to the device with a single write. Attributes come from the volume
 * layer's NodeStat and StatFs; nothing here knows the handlers.
 */
import type { NodeStat, StatFs } from '../../volume/types.js';
import { DT_DIR, DT_REG, NOTIFY_INVAL_INODE, SIZE } from './protocol.js';

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const OH = SIZE.OUT_HEADER;

export function putU64(b: Buffer, off: number, n: number): void {
  const lo = n % 0x100000000;
  b.writeUInt32LE(lo >>> 0, off);
  b.writeUInt32LE(Math.floor((n - lo) / 0x100000000) >>> 0, off + 4);
}

/** Signed 64-bit (a negative offset for a notification's "to the end"). */
export function putS64(b: Buffer, off: number, n: number): void {
  b.writeBigInt64LE(BigInt(n), off);
}

function header(b: Buffer, error: number, unique: number): Buffer {
  b.writeUInt32LE(b.length, 0);
  b.writeInt32LE(error, 4);
  putU64(b, 8, unique);
  return b;
}

/** A reply of `bodySize` bytes after the header, zero-filled (padding and unused fields must be 0). */
function reply(unique: number, bodySize: number): Buffer {
  return header(Buffer.alloc(OH + bodySize), 0, unique);
}

/** An error reply: `errno` is negative (E.ENOENT…). */
export function errorReply(unique: number, errno: number): Buffer {
  return header(Buffer.alloc(OH), errno, unique);
}

/** A success reply without a body (SETXATTR, UNLINK, RELEASE, FLUSH, FSYNC…). */
export function emptyReply(unique: number): Buffer {
  return reply(unique, 0);
}

/** A success reply whose body is `data` (READ, LISTXATTR and GETXATTR values). */
export function dataReply(unique: number, data: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(OH + data.length);
  b.set(data, OH);
  return header(b, 0, unique);
}

/** The header of a reply whose `bodySize` bytes follow in a buffer of their own (READ: written with writev, no copy). */
export function replyHeader(unique: number, bodySize: number): Buffer {
  const b = Buffer.allocUnsafe(OH);
  b.writeUInt32LE(OH + bodySize, 0);
  b.writeInt32LE(0, 4);
  putU64(b, 8, unique);
  return b;
}

export function fileType(st: NodeStat): number {
  return st.kind === 'dir' ? S_IFDIR : S_IFREG;
}

/** fuse_attr (88 bytes) at `off`. */
export function putAttr(b: Buffer, off: number, st: NodeStat): void {
  putU64(b, off, st.ino);
  putU64(b, off + 8, st.size);
  putU64(b, off + 16, Math.ceil(st.allocatedBytes / 512));
  putTime(b, off + 24, off + 48, st.atimeMs);
  putTime(b, off + 32, off + 52, st.mtimeMs);
  putTime(b, off + 40, off + 56, st.ctimeMs);
  b.writeUInt32LE((fileType(st) | (st.mode & 0o7777)) >>> 0, off + 60);
  b.writeUInt32LE(st.nlink, off + 64);
  b.writeUInt32LE(st.uid >>> 0, off + 68);
  b.writeUInt32LE(st.gid >>> 0, off + 72);
  // rdev 0; blksize 4096 (one cluster); flags 0
  b.writeUInt32LE(4096, off + 80);
}

function putTime(b: Buffer, secOff: number, nsecOff: number, ms: number): void {
  const sec = Math.floor(ms / 1000);
  putU64(b, secOff, Math.max(0, sec));
  b.writeUInt32LE(Math.max(0, Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6))), nsecOff);
}

/** fuse_entry_out (128 bytes) at `off`: the node id, generation 0, timeouts in seconds, the attributes. */
export function putEntry(b: Buffer, off: number, nodeid: number, st: NodeStat, entryValidS: number, attrValidS: number): void {
  putU64(b, off, nodeid);
  putU64(b, off + 8, 0);
  putU64(b, off + 16, entryValidS);
  putU64(b, off + 24, attrValidS);
  putAttr(b, off + 40, st);
}

/** LOOKUP, MKNOD, MKDIR reply. */
export function entryReply(unique: number, nodeid: number, st: NodeStat, entryValidS: number, attrValidS: number): Buffer {
  const b = reply(unique, SIZE.ENTRY_OUT);
  putEntry(b, OH, nodeid, st, entryValidS, attrValidS);
  return b;
}

/** GETATTR, SETATTR reply: fuse_attr_out. */
export function attrReply(unique: number, st: NodeStat, attrValidS: number): Buffer {
  const b = reply(unique, SIZE.ATTR_OUT);
  putU64(b, OH, attrValidS);
  putAttr(b, OH + 16, st);
  return b;
}

/** OPEN, OPENDIR reply: fuse_open_out. */
export function openReply(unique: number, fh: number, openFlags: number): Buffer {
  const b = reply(unique, SIZE.OPEN_OUT);
  putU64(b, OH, fh);
  b.writeUInt32LE(openFlags, OH + 8);
  return b;
}

/** CREATE reply: fuse_entry_out then fuse_open_out. */
export function createReply(unique: number, nodeid: number, st: NodeStat, entryValidS: number, attrValidS: number, fh: number, openFlags: number): Buffer {
  const b = reply(unique, SIZE.ENTRY_OUT + SIZE.OPEN_OUT);
  putEntry(b, OH, nodeid, st, entryValidS, attrValidS);
  putU64(b, OH + SIZE.ENTRY_OUT, fh);
  b.writeUInt32LE(openFlags, OH + SIZE.ENTRY_OUT + 8);
  return b;
}

export function writeReply(unique: number, size: number): Buffer {
  const b = reply(unique, SIZE.WRITE_OUT);
  b.writeUInt32LE(size, OH);
  return b;
}

/** GETXATTR / LISTXATTR size probe (the caller's size was 0): fuse_getxattr_out with the length. */
export function xattrSizeReply(unique: number, size: number): Buffer {
  const b = reply(unique, SIZE.GETXATTR_OUT);
  b.writeUInt32LE(size, OH);
  return b;
}

export function lseekReply(unique: number, offset: number): Buffer {
  const b = reply(unique, SIZE.LSEEK_OUT);
  putU64(b, OH, offset);
  return b;
}

/**
 * STATFS reply: fuse_kstatfs with 64-bit counts (no 32-bit squeezing as with fuse-native).
 * The volume layer's `files` counts the nodes in use; the kernel's `files` is the total, so total = used + free.
 */
export function statfsReply(unique: number, s: StatFs): Buffer {
  const b = reply(unique, SIZE.STATFS_OUT);
  putU64(b, OH, s.totalBlocks);
  putU64(b, OH + 8, s.freeBlocks);
  putU64(b, OH + 16, s.freeBlocks);
  putU64(b, OH + 24, s.files + s.freeFiles);
  putU64(b, OH + 32, s.freeFiles);
  b.writeUInt32LE(s.blockSize, OH + 40);
  b.writeUInt32LE(s.nameMax, OH + 44);
  b.writeUInt32LE(s.blockSize, OH + 48);
  return b;
}

export interface InitReply {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  flags2: number;
}

export function initReply(unique: number, r: InitReply): Buffer {
  const b = reply(unique, SIZE.INIT_OUT);
  b.writeUInt32LE(r.major, OH);
  b.writeUInt32LE(r.minor, OH + 4);
  b.writeUInt32LE(r.maxReadahead, OH + 8);
  b.writeUInt32LE(r.flags >>> 0, OH + 12);
  b.writeUInt16LE(r.maxBackground, OH + 16);
  b.writeUInt16LE(r.congestionThreshold, OH + 18);
  b.writeUInt32LE(r.maxWrite, OH + 20);
  b.writeUInt32LE(r.timeGran, OH + 24);
  b.writeUInt16LE(r.maxPages, OH + 28);
  // map_alignment 0
  b.writeUInt32LE(r.flags2 >>> 0, OH + 32);
  return b;
}

export interface Dirent {
  ino: number;
  name: string;
  kind: 'file' | 'dir' | 'unknown';
}

/**
 * READDIR reply body: fuse_dirent records (ino, off = index of the next entry, namelen, type, name padded
 * to 8 bytes) for entries[start…] as long as they fit in `size` bytes. The kernel asks again from the
 * last `off` it saw, so a directory of any length is read in pieces.
 */
export function direntsReply(unique: number, entries: Dirent[], start: number, size: number): Buffer {
  const parts: Buffer[] = [];
  let used = 0;
  for (let i = start; i < entries.length; i++) {
    const name = Buffer.from(entries[i].name, 'utf8');
    const rec = (SIZE.DIRENT_HEADER + name.length + 7) & ~7;
    if (used + rec > size) break;
    const d = Buffer.alloc(rec);
    putU64(d, 0, entries[i].ino);
    putU64(d, 8, i + 1);
    d.writeUInt32LE(name.length, 16);
    d.writeUInt32LE(entries[i].kind === 'dir' ? DT_DIR : entries[i].kind === 'file' ? DT_REG : 0, 20);
    name.copy(d, SIZE.DIRENT_HEADER);
    parts.push(d);
    used += rec;
  }
  const b = Buffer.alloc(OH + used);
  let off = OH;
  for (const p of parts) {
    p.copy(b, off);
    off += p.length;
  }
  return header(b, 0, unique);
}

/** FUSE_NOTIFY_INVAL_INODE: drop the cached pages of `nodeid` from `off` (len ≤ 0: to the end) and its attributes. */
export function notifyInvalInode(nodeid: number, off: number, len: number): Buffer {
  const b = Buffer.alloc(OH + SIZE.NOTIFY_INVAL_INODE_OUT);
  header(b, NOTIFY_INVAL_INODE, 0);
  putU64(b, OH, nodeid);
  putS64(b, OH + 8, off);
  putS64(b, OH + 16, len);
  return b;
}
