/**
 * A do-nothing passthrough FUSE filesystem on fuse-native: the reference that `npm run bench` measures
 * vpoolfs against. It mirrors BACKINGDIR at MOUNTPOINT, with the mount options vpoolfs uses
 * (`big_writes,max_write=131072`, as root `allow_other,default_permissions`, fuse-native's per-operation
 * timeout off), and does per request only
 * what any fuse-native filesystem must: one positional fs.read/fs.write on a file descriptor of the
 * backing file. Whatever vpoolfs costs beyond this is the cost of vpoolfs, not of FUSE or fuse-native.
 *
 *   node dist/bench/mount/passthrough.js MOUNTPOINT BACKINGDIR
 *
 * Runs in the foreground; SIGTERM/SIGINT unmount and exit 0. It never makes a call against its own mount.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

/**
 * The `-o` options vpoolfs adds to fuse-native's (fuse/mount.ts): writes of up to 128 KiB per request
 * (DESIGN.md, "Measured anchors") and, as root, allow_other with the kernel checking permissions.
 */
export const MOUNT_OPTIONS = ['big_writes', 'max_write=131072', ...(process.getuid?.() === 0 ? ['allow_other', 'default_permissions'] : [])].join(',');

type Cb = (code: number, ...rest: unknown[]) => void;
interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  _fuseOptions(): string;
}
interface FuseCtor {
  new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance;
  EIO: number;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
}

const require = createRequire(import.meta.url);
const Fuse = require('fuse-native') as FuseCtor;

/** fuse-native has no option for big_writes/max_write: append them to the `-o` string it builds. */
class BigWritesFuse extends (Fuse as unknown as new (...a: ConstructorParameters<FuseCtor>) => FuseInstance) {
  _fuseOptions(): string {
    const base = super._fuseOptions();
    return base ? `${base},${MOUNT_OPTIONS}` : `-o${MOUNT_OPTIONS}`;
  }
}

/** A Node fs error to a negative errno for fuse-native. */
function errno(err: NodeJS.ErrnoException): number {
  return typeof err.errno === 'number' && err.errno < 0 ? err.errno : Fuse.EIO;
}

/** A callback that answers 0 or -errno. */
function done(cb: Cb): (err: NodeJS.ErrnoException | null) => void {
  return (err) => cb(err ? errno(err) : 0);
}

/** O_DIRECT and the creation flags are the kernel's business, not the backing file's. */
const { O_CREAT, O_EXCL, O_RDWR, O_NOCTTY } = fs.constants;
const O_DIRECT = fs.constants.O_DIRECT ?? 0o40000;
const STRIP = O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY;

function toStat(st: fs.Stats): Record<string, unknown> {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, dev: st.dev, nlink: st.nlink, ino: st.ino,
    rdev: st.rdev, blksize: st.blksize, blocks: st.blocks, atime: st.atime, mtime: st.mtime, ctime: st.ctime,
  };
}

export function passthroughOps(backing: string): Record<string, unknown> {
  const p = (rel: string): string => path.join(backing, rel);
  const getattr = (rel: string, cb: Cb): void => {
    fs.lstat(p(rel), (err, st) => (err ? cb(errno(err)) : cb(0, toStat(st))));
  };
  return {
    getattr,
    fgetattr: (rel: string, fd: number, cb: Cb): void => {
      fs.fstat(fd, (err, st) => (err ? cb(errno(err)) : cb(0, toStat(st))));
    },
    readdir: (rel: string, cb: Cb): void => {
      fs.readdir(p(rel), (err, names) => (err ? cb(errno(err)) : cb(0, names)));
    },
    create: (rel: string, mode: number, cb: Cb): void => {
      fs.open(p(rel), O_CREAT | O_RDWR, mode, (err, fd) => (err ? cb(errno(err)) : cb(0, fd)));
    },
    open: (rel: string, flags: number, cb: Cb): void => {
      fs.open(p(rel), flags & ~STRIP, (err, fd) => (err ? cb(errno(err)) : cb(0, fd)));
    },
    read: (rel: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb): void => {
      fs.read(fd, buf, 0, len, pos, (err, n) => cb(err ? errno(err) : n));
    },
    write: (rel: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb): void => {
      fs.write(fd, buf, 0, len, pos, (err, n) => cb(err ? errno(err) : n));
    },
    fsync: (rel: string, datasync: number, fd: number, cb: Cb): void => {
      (datasync ? fs.fdatasync : fs.fsync)(fd, done(cb));
    },
    flush: (rel: string, fd: number, cb: Cb): void => cb(0),
    release: (rel: string, fd: number, cb: Cb): void => fs.close(fd, done(cb)),
    truncate: (rel: string, size: number, cb: Cb): void => fs.truncate(p(rel), size, done(cb)),
    ftruncate: (rel: string, fd: number, size: number, cb: Cb): void => fs.ftruncate(fd, size, done(cb)),
    unlink: (rel: string, cb: Cb): void => fs.unlink(p(rel), done(cb)),
    mkdir: (rel: string, mode: number, cb: Cb): void => fs.mkdir(p(rel), { mode }, done(cb)),
    rmdir: (rel: string, cb: Cb): void => fs.rmdir(p(rel), done(cb)),
    rename: (from: string, to: string, cb: Cb): void => fs.rename(p(from), p(to), done(cb)),
    statfs: (rel: string, cb: Cb): void => {
      fs.statfs(backing, (err, s) => {
        if (err) return cb(errno(err));
        cb(0, {
          bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: 255,
        });
      });
    },
    utimens: (rel: string, atime: number, mtime: number, cb: Cb): void => {
      fs.utimes(p(rel), new Date(atime), new Date(mtime), done(cb));
    },
  };
}

/** Mounts `backing` at `mountpoint`; resolves once the mount is up. */
export function mountPassthrough(mountpoint: string, backing: string): Promise<{ options: string; unmount: () => Promise<void> }> {
  const fuse = new BigWritesFuse(mountpoint, passthroughOps(path.resolve(backing)), {
    timeout: false, force: true, mkdir: true, fsname: 'passthrough',
  });
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) return reject(err);
      const unmount = (): Promise<void> => new Promise<void>((res, rej) => fuse.unmount((e) => (e ? rej(e) : res())));
      resolve({ options: fuse._fuseOptions(), unmount });
    });
  });
}

async function main(argv: string[]): Promise<void> {
  const [mountpoint, backing] = argv;
  if (!mountpoint || !backing) {
    process.stderr.write('usage: node dist/bench/mount/passthrough.js MOUNTPOINT BACKINGDIR\n');
    process.exit(2);
  }
  fs.mkdirSync(backing, { recursive: true });
  const { options, unmount } = await mountPassthrough(mountpoint, backing);
  process.stderr.write(`passthrough: ${backing} mounted at ${mountpoint} (${options})\n`);
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`passthrough: ${sig}, unmounting\n`);
    unmount().then(() => process.exit(0), (e: unknown) => {
      process.stderr.write(`passthrough: unmount failed: ${String(e)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`passthrough: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
