/**
 * Decoding of FUSE requests as they come out of /dev/fuse: the 40-byte fuse_in_header, then one body per
 * opcode (layouts of /usr/include/linux/fuse.h). Each decoder takes the whole request and returns a
 * plain object; a request too short for its struct throws ShortRequest (the session answers EINVAL).
 * 64-bit fields are read as Numbers: offsets and sizes stay far below 2^53 (64 TiB vDisks).
 */
import { SIZE } from './protocol.js';

export class ShortRequest extends Error {}

export interface InHeader {
  len: number;
  opcode: number;
  unique: number;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x100000000;
}

/** Signed 64-bit (lseek and fallocate offsets are loff_t). */
export function s64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readInt32LE(off + 4) * 0x100000000;
}

export function decodeHeader(b: Buffer): InHeader {
  if (b.length < SIZE.IN_HEADER) throw new ShortRequest(`request of ${b.length} bytes is shorter than fuse_in_header`);
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: u64(b, 8),
    nodeid: u64(b, 16),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

const H = SIZE.IN_HEADER;

function need(b: Buffer, bytes: number, what: string): void {
  if (b.length < H + bytes) throw new ShortRequest(`${what}: ${b.length - H} bytes of body, ${bytes} needed`);
}

/** A NUL-terminated name starting at `off`; the end of the request if there is no NUL. */
function cstr(b: Buffer, off: number): { s: string; next: number } {
  let end = b.indexOf(0, off);
  if (end < 0) end = b.length;
  return { s: b.toString('utf8', off, end), next: end + 1 };
}

export const decode = {
  init(b: Buffer) {
    need(b, SIZE.INIT_IN_MIN, 'INIT');
    const hasFlags2 = b.length >= H + 20;
    return { major: b.readUInt32LE(H), minor: b.readUInt32LE(H + 4), maxReadahead: b.readUInt32LE(H + 8), flags: b.readUInt32LE(H + 12), flags2: hasFlags2 ? b.readUInt32LE(H + 16) : 0 };
  },
  /** LOOKUP, UNLINK, RMDIR, GETXATTR's name, REMOVEXATTR: a single name. */
  name(b: Buffer) {
    return { name: cstr(b, H).s };
  },
  forget(b: Buffer) {
    need(b, SIZE.FORGET_IN, 'FORGET');
    return { nlookup: u64(b, H) };
  },
  batchForget(b: Buffer) {
    need(b, SIZE.BATCH_FORGET_IN, 'BATCH_FORGET');
    const count = b.readUInt32LE(H);
    need(b, SIZE.BATCH_FORGET_IN + count * SIZE.FORGET_ONE, 'BATCH_FORGET entries');
    const items: { nodeid: number; nlookup: number }[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const o = H + SIZE.BATCH_FORGET_IN + i * SIZE.FORGET_ONE;
      items[i] = { nodeid: u64(b, o), nlookup: u64(b, o + 8) };
    }
    return { items };
  },
  getattr(b: Buffer) {
    // a kernel may send GETATTR with no body (older protocol); treat it as "no fh"
    if (b.length < H + SIZE.GETATTR_IN) return { flags: 0, fh: 0 };
    return { flags: b.readUInt32LE(H), fh: u64(b, H + 8) };
  },
  setattr(b: Buffer) {
    need(b, SIZE.SETATTR_IN, 'SETATTR');
    return {
      valid: b.readUInt32LE(H),
      fh: u64(b, H + 8),
      size: u64(b, H + 16),
      atime: u64(b, H + 32),
      mtime: u64(b, H + 40),
      atimensec: b.readUInt32LE(H + 56),
      mtimensec: b.readUInt32LE(H + 60),
      mode: b.readUInt32LE(H + 68),
      uid: b.readUInt32LE(H + 76),
      gid: b.readUInt32LE(H + 80),
    };
  },
  mknod(b: Buffer) {
    need(b, SIZE.MKNOD_IN, 'MKNOD');
    return { mode: b.readUInt32LE(H), rdev: b.readUInt32LE(H + 4), umask: b.readUInt32LE(H + 8), name: cstr(b, H + SIZE.MKNOD_IN).s };
  },
  mkdir(b: Buffer) {
    need(b, SIZE.MKDIR_IN, 'MKDIR');
    return { mode: b.readUInt32LE(H), umask: b.readUInt32LE(H + 4), name: cstr(b, H + SIZE.MKDIR_IN).s };
  },
  rename(b: Buffer) {
    need(b, SIZE.RENAME_IN, 'RENAME');
    const from = cstr(b, H + SIZE.RENAME_IN);
    return { newdir: u64(b, H), flags: 0, oldname: from.s, newname: cstr(b, from.next).s };
  },
  rename2(b: Buffer) {
    need(b, SIZE.RENAME2_IN, 'RENAME2');
    const from = cstr(b, H + SIZE.RENAME2_IN);
    return { newdir: u64(b, H), flags: b.readUInt32LE(H + 8), oldname: from.s, newname: cstr(b, from.next).s };
  },
  open(b: Buffer) {
    need(b, SIZE.OPEN_IN, 'OPEN');
    return { flags: b.readUInt32LE(H), openFlags: b.readUInt32LE(H + 4) };
  },
  create(b: Buffer) {
    need(b, SIZE.CREATE_IN, 'CREATE');
    return { flags: b.readUInt32LE(H), mode: b.readUInt32LE(H + 4), umask: b.readUInt32LE(H + 8), openFlags: b.readUInt32LE(H + 12), name: cstr(b, H + SIZE.CREATE_IN).s };
  },
  /** RELEASE and RELEASEDIR */
  release(b: Buffer) {
    need(b, SIZE.RELEASE_IN, 'RELEASE');
    return { fh: u64(b, H), flags: b.readUInt32LE(H + 8), releaseFlags: b.readUInt32LE(H + 12) };
  },
  flush(b: Buffer) {
    need(b, SIZE.FLUSH_IN, 'FLUSH');
    return { fh: u64(b, H) };
  },
  /** READ and READDIR */
  read(b: Buffer) {
    need(b, SIZE.READ_IN, 'READ');
    return { fh: u64(b, H), offset: u64(b, H + 8), size: b.readUInt32LE(H + 16), readFlags: b.readUInt32LE(H + 20), flags: b.readUInt32LE(H + 32) };
  },
  /** The data is a view into the request (no copy). */
  write(b: Buffer) {
    need(b, SIZE.WRITE_IN, 'WRITE');
    const size = b.readUInt32LE(H + 16);
    need(b, SIZE.WRITE_IN + size, 'WRITE data');
    const start = H + SIZE.WRITE_IN;
    return { fh: u64(b, H), offset: u64(b, H + 8), size, writeFlags: b.readUInt32LE(H + 20), flags: b.readUInt32LE(H + 32), data: b.subarray(start, start + size) };
  },
  /** FSYNC and FSYNCDIR */
  fsync(b: Buffer) {
    need(b, SIZE.FSYNC_IN, 'FSYNC');
    return { fh: u64(b, H), fsyncFlags: b.readUInt32LE(H + 8) };
  },
  /** The value is a view into the request (no copy). */
  setxattr(b: Buffer) {
    need(b, SIZE.SETXATTR_IN, 'SETXATTR');
    const size = b.readUInt32LE(H);
    const name = cstr(b, H + SIZE.SETXATTR_IN);
    if (b.length < name.next + size) throw new ShortRequest(`SETXATTR: value of ${size} bytes cut short`);
    return { size, flags: b.readUInt32LE(H + 4), name: name.s, value: b.subarray(name.next, name.next + size) };
  },
  getxattr(b: Buffer) {
    need(b, SIZE.GETXATTR_IN, 'GETXATTR');
    return { size: b.readUInt32LE(H), name: cstr(b, H + SIZE.GETXATTR_IN).s };
  },
  /** LISTXATTR: getxattr_in without a name */
  listxattr(b: Buffer) {
    need(b, SIZE.GETXATTR_IN, 'LISTXATTR');
    return { size: b.readUInt32LE(H) };
  },
  access(b: Buffer) {
    need(b, SIZE.ACCESS_IN, 'ACCESS');
    return { mask: b.readUInt32LE(H) };
  },
  interrupt(b: Buffer) {
    need(b, SIZE.INTERRUPT_IN, 'INTERRUPT');
    return { unique: u64(b, H) };
  },
  fallocate(b: Buffer) {
    need(b, SIZE.FALLOCATE_IN, 'FALLOCATE');
    return { fh: u64(b, H), offset: u64(b, H + 8), length: u64(b, H + 16), mode: b.readUInt32LE(H + 24) };
  },
  lseek(b: Buffer) {
    need(b, SIZE.LSEEK_IN, 'LSEEK');
    return { fh: u64(b, H), offset: s64(b, H + 8), whence: b.readUInt32LE(H + 16) };
  },
};
