/**
 * FUSE handlers for file I/O: open, read, write, flush, fsync, release, truncate, ftruncate, and (kernel
 * engine only: fuse-native has no such operations) fallocate and lseek.
 * read and write go straight to the VDisk held in the fd table (no path lookup per request) and keep
 * the per-request JS work to one promise and one copy.
 */
import type { Cb } from 'fuse-native';
import type { VDisk } from '../volume/types.js';
import { E, toErrno } from './errno.js';
import { settle, type OpContext } from './ops-tree.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from './kernel/protocol.js';


export function ioOps(ctx: OpContext) {
  const { vpool, fds } = ctx;

  function diskOf(path: string, fd: number): VDisk {
    return fds.get(fd) ?? vpool.vdisk(path);
  }

  return {
    open(path: string, _flags: number, cb: Cb) {
      try {
        cb(0, fds.add(vpool.vdisk(path)));
      } catch (err) {
        cb(toErrno(err, 'open', path));
      }
    },

    /**
     * Answers the byte count; with `buf` (fuse-native) the data is copied into it, without (the kernel
     * engine, which writes the volume layer's buffer after its reply header) it comes as a second value.
     */
    read(path: string, fd: number, buf: Buffer | undefined, len: number, offset: number, cb: Cb) {
      const disk = fds.get(fd);
      if (disk === undefined) return cb(E.EBADF);
      // straight into fuse-native's buffer, or into one the kernel engine writes after its reply header
      const out = buf === undefined ? Buffer.allocUnsafe(len) : buf.length === len ? buf : buf.subarray(0, len);
      let p: Promise<number>;
      try {
        p = disk.readInto(out, offset);
      } catch (err) {
        return cb(toErrno(err, 'read', path));
      }
      p.then(
        (n) => (buf === undefined ? cb(n, out.subarray(0, n)) : cb(n)),
        (err: unknown) => cb(toErrno(err, 'read', path)),
      );
    },

    write(path: string, fd: number, buf: Buffer, len: number, offset: number, cb: Cb) {
      const disk = fds.get(fd);
      if (disk === undefined) return cb(E.EBADF);
      let p: Promise<void>;
      try {
        // fuse-native detaches `buf` once we answer: the volume layer must not keep it (it copies).
        p = disk.write(offset, buf.length === len ? buf : buf.subarray(0, len));
      } catch (err) {
        return cb(toErrno(err, 'write', path));
      }
      p.then(
        () => cb(len),
        (err: unknown) => cb(toErrno(err, 'write', path)),
      );
    },

    /** close(2): nothing to do, every acknowledged write already survives a kill of the daemon. */
    flush(_path: string, _fd: number, cb: Cb) {
      cb(0);
    },

    fsync(path: string, _datasync: number, fd: number, cb: Cb) {
      let p: Promise<void>;
      try {
        p = diskOf(path, fd).sync();
      } catch (err) {
        return cb(toErrno(err, 'fsync', path));
      }
      settle(p, cb, 'fsync', path);
    },

    release(_path: string, fd: number, cb: Cb) {
      fds.release(fd);
      cb(0);
    },

    truncate(path: string, size: number, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.vdisk(path).resize(size)), cb, 'truncate', path);
    },

    ftruncate(path: string, fd: number, size: number, cb: Cb) {
      settle(Promise.resolve().then(() => diskOf(path, fd).resize(size)), cb, 'ftruncate', path);
    },

    /**
     * fallocate(2). Mode 0 grows the vDisk to offset+length if that is past its size (thin: nothing is
     * written); KEEP_SIZE alone has nothing to do (a thin vDisk reserves no space). PUNCH_HOLE|KEEP_SIZE
     * and ZERO_RANGE discard the range in the volume (it reads as zeros, whole clusters are freed: `du`
     * drops); the part past the size is cut off, except that ZERO_RANGE without KEEP_SIZE first grows the
     * vDisk to offset+length, as on a local filesystem. Other modes (collapse, insert, unshare): EOPNOTSUPP.
     */
    fallocate(path: string, fd: number, mode: number, offset: number, length: number, cb: Cb) {
      const punch = (mode & FALLOC_FL_PUNCH_HOLE) !== 0;
      const zero = (mode & FALLOC_FL_ZERO_RANGE) !== 0;
      const keep = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
      if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) return cb(E.ENOTSUP);
      if ((punch && (zero || !keep)) || offset < 0 || length <= 0) return cb(punch && !keep ? E.ENOTSUP : E.EINVAL);
      if (!punch && !zero && keep) return cb(0);
      settle(
        Promise.resolve().then(async () => {
          const disk = diskOf(path, fd);
          if (!keep && offset + length > disk.size) await disk.resize(offset + length);
          if (!punch && !zero) return;
          const end = Math.min(offset + length, disk.size);
          if (end > offset) await disk.discard(offset, end - offset);
        }),
        cb,
        'fallocate',
        path,
      );
    },

    /** lseek(2) SEEK_DATA / SEEK_HOLE from the cluster map: answers (0, offset) or ENXIO. */
    lseek(path: string, fd: number, offset: number, whence: 'data' | 'hole', cb: Cb) {
      try {
        const at = diskOf(path, fd).seek(offset, whence);
        if (at < 0) return cb(E.ENXIO);
        cb(0, at);
      } catch (err) {
        cb(toErrno(err, 'lseek', path));
      }
    },
  };
}
