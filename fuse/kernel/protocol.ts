/**
 * The FUSE kernel protocol's numbers, from /usr/include/linux/fuse.h (7.38): opcodes, INIT and open
 * flags, setattr bits, and the sizes of the structs vpoolfs reads and writes. No logic here.
 * All structs are little-endian on x86-64 and arm64, padded to 8 bytes.
 */

/** The protocol version vpoolfs speaks: 7.38 (what it was measured with). The kernel offers up to 7.45. */
export const KERNEL_MAJOR = 7;
export const KERNEL_MINOR = 38;

export const ROOT_ID = 1;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
  /** 7.39; the kernel falls back to GETATTR when it is answered ENOSYS. */
  STATX: 52,
} as const;

/** INIT flags (fuse_init_in/out.flags). */
export const Init = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  HANDLE_KILLPRIV_V2: 1 << 28,
  INIT_EXT: 1 << 30,
} as const;

/** fuse_open_out.open_flags */
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;

/** fuse_setattr_in.valid */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const GETATTR_FH = 1 << 0;
export const WRITE_KILL_SUIDGID = 1 << 2;
export const FSYNC_FDATASYNC = 1 << 0;
export const OPEN_KILL_SUIDGID = 1 << 0;

/** renameat2(2) flags */
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;

/** fallocate(2) modes */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** lseek(2) whence */
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** fuse_notify_code (a message with unique 0 and this code in the error field) */
export const NOTIFY_INVAL_INODE = 2;

/** d_type values in fuse_dirent.type */
export const DT_DIR = 4;
export const DT_REG = 8;

/** Struct sizes in bytes. */
export const SIZE = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  OPEN_OUT: 16,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  INIT_OUT: 64,
  GETXATTR_OUT: 8,
  LSEEK_OUT: 8,
  DIRENT_HEADER: 24,
  NOTIFY_INVAL_INODE_OUT: 24,
  // requests
  INIT_IN_MIN: 16,
  FORGET_IN: 8,
  FORGET_ONE: 16,
  BATCH_FORGET_IN: 8,
  GETATTR_IN: 16,
  SETATTR_IN: 88,
  MKNOD_IN: 16,
  MKDIR_IN: 8,
  RENAME_IN: 8,
  RENAME2_IN: 16,
  OPEN_IN: 8,
  CREATE_IN: 16,
  RELEASE_IN: 24,
  FLUSH_IN: 24,
  READ_IN: 40,
  WRITE_IN: 40,
  FSYNC_IN: 16,
  /** Without FUSE_SETXATTR_EXT (vpoolfs does not ask for it) setxattr_in is the 8-byte compat form. */
  SETXATTR_IN: 8,
  GETXATTR_IN: 8,
  ACCESS_IN: 8,
  INTERRUPT_IN: 8,
  FALLOCATE_IN: 32,
  LSEEK_IN: 24,
} as const;

/** The largest write vpoolfs accepts (INIT max_write) and pages per request (max_pages). */
export const MAX_WRITE = 1 << 20;
export const MAX_PAGES = 256;
/** A read of /dev/fuse must have room for the largest request: header + write_in + max_write (and a page to spare). */
export const READ_BUFFER_SIZE = MAX_WRITE + 4096;
