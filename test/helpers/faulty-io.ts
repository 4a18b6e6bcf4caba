/**
 * A fault-injecting CacheIo (volume/datapath/write-cache/cache-io.ts) for the durability tests. It passes every call to
 * node:fs, and besides:
 *  - fails a chosen call with an errno (EIO, ENOSPC) once or a few times: failNext();
 *  - holds every fdatasync until released (holdSyncs()), to let writes, TLog closes and corks run
 *    while a sync is in flight;
 *  - keeps a shadow of what each fdatasync really made durable: when an fdatasync starts running, the
 *    content of the file its descriptor designates *then* (fstat: a descriptor that was closed and reused
 *    designates the other file) is recorded under that file's inode, once the fdatasync succeeds;
 *  - models a power cut: powerCut(dir) rewrites every file below `dir` to its shadow (a file never
 *    fdatasynced becomes empty); freeze() first turns the "dead" process's later calls into no-ops.
 * The model keeps creations, renames and removals of names as they happen (as if every directory fsync
 * had been done): it tests what fdatasync must cover, the file contents.
 */
import fs from 'node:fs';
import path from 'node:path';
import { realCacheIo, type CacheIo } from '../../volume/datapath/write-cache/cache-io.js';

export type IoOp = 'open' | 'writev' | 'fdatasync' | 'rename' | 'unlink' | 'truncate' | 'fsyncDir';

interface Rule {
  op: IoOp;
  code: string;
  left: number;
  match: (file: string) => boolean;
}

const ERRNO: Record<string, number> = { EIO: 5, ENOSPC: 28, EBADF: 9 };

export function errnoError(code: string, syscall: string, file: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault, ${syscall} '${file}'`), { code, errno: -(ERRNO[code] ?? 5), syscall, path: file });
}

export class FaultyIo implements CacheIo {
  /**
   * Content of each file as of its last completed fdatasync, by inode: an fdatasync covers the file its
   * descriptor designates whatever its name is meanwhile (a TLog renamed while its sync is in flight).
   */
  readonly shadow: Map<number, Buffer>;
  /** Faults injected so far. */
  injected = 0;
  /** fdatasyncs completed, in order, with the file each one really covered. */
  readonly synced: string[] = [];
  /** fdatasyncs waiting at holdSyncs()' gate right now. */
  held = 0;
  private readonly paths = new Map<number, string>();
  private rules: Rule[] = [];
  private hold: Promise<void> | null = null;
  private release: () => void = () => {};
  private frozen = false;
  private devNull = -1;
  private captures = 0;
  /** The capture each shadow entry comes from (this boot). */
  private readonly capturedAt = new Map<number, number>();

  /**
   * `shadow`: what is durable already (shared across the "boots" of a power-cut test: what a cut left, or
   * what was synced before a kill, stays durable for the next boot).
   */
  constructor(shadow: Map<number, Buffer> = new Map()) {
    this.shadow = shadow;
  }

  /** Makes the next `count` calls of `op` (on a file `match` accepts) fail with `code`. */
  failNext(op: IoOp, code: string, opts: { count?: number; match?: (file: string) => boolean } = {}): void {
    this.rules.push({ op, code, left: opts.count ?? 1, match: opts.match ?? (() => true) });
  }

  /** Every fdatasync from now on waits until the returned function is called. */
  holdSyncs(): () => void {
    if (this.hold === null) this.hold = new Promise<void>((r) => { this.release = r; });
    return () => {
      this.hold = null;
      this.release();
    };
  }

  /** The process "dies": from now on no call changes anything, and fdatasyncs never return. */
  freeze(): void {
    this.frozen = true;
    this.hold = null;
    this.release();
  }

  /** After freeze(): every file below `dir` keeps only what was fdatasynced (never synced: empty). */
  powerCut(dir: string): void {
    for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (!e.isFile()) continue;
      const file = path.join(e.parentPath, e.name);
      const ino = fs.statSync(file).ino;
      const content = this.shadow.get(ino) ?? Buffer.alloc(0);
      fs.writeFileSync(file, content);
      this.shadow.set(ino, content); // what the cut left is on the disk for the next boot
    }
  }

  open(file: string, flags: string): number {
    if (this.frozen) return this.deadFd();
    this.check('open', file);
    const fd = realCacheIo.open(file, flags);
    this.paths.set(fd, file);
    // a file created (or truncated) now has nothing synced yet, whatever an inode of that number had
    if (flags.startsWith('w')) {
      const ino = fs.fstatSync(fd).ino;
      this.shadow.delete(ino);
      this.capturedAt.set(ino, ++this.captures); // a sync captured before this creation is of another file
    }
    return fd;
  }

  writev(fd: number, iov: Uint8Array[], position: number): number {
    if (this.frozen) return iov.reduce((n, b) => n + b.length, 0);
    this.check('writev', this.paths.get(fd) ?? `fd ${fd}`);
    return realCacheIo.writev(fd, iov, position);
  }

  async fdatasync(fd: number): Promise<void> {
    if (this.frozen) return new Promise<void>(() => {});
    this.check('fdatasync', this.paths.get(fd) ?? `fd ${fd}`);
    while (this.hold !== null) {
      this.held++;
      try {
        await this.hold;
      } finally {
        this.held--;
      }
    }
    if (this.frozen) return new Promise<void>(() => {});
    // what the descriptor designates now, not what it was opened as: a reused number is another file
    let real: string;
    let ino: number;
    try {
      real = fs.readlinkSync(`/proc/self/fd/${fd}`);
      ino = fs.fstatSync(fd).ino;
    } catch {
      throw errnoError('EBADF', 'fdatasync', `fd ${fd}`);
    }
    const content = readAll(fd);
    const seq = ++this.captures;
    await realCacheIo.fdatasync(fd);
    if (this.frozen) return new Promise<void>(() => {});
    // two syncs of one file may finish in either order: the later capture is what is on the disk
    if ((this.capturedAt.get(ino) ?? 0) < seq) {
      this.capturedAt.set(ino, seq);
      this.shadow.set(ino, content);
    }
    this.synced.push(real);
  }

  close(fd: number): void {
    if (this.frozen) return;
    this.paths.delete(fd);
    realCacheIo.close(fd);
  }

  rename(from: string, to: string): void {
    if (this.frozen) return;
    this.check('rename', from);
    realCacheIo.rename(from, to);
    for (const [fd, p] of this.paths) if (p === from) this.paths.set(fd, to);
  }

  unlink(file: string): void {
    if (this.frozen) return;
    this.check('unlink', file);
    this.forget(file);
    realCacheIo.unlink(file);
  }

  unlinkAsync(file: string, done: () => void): void {
    if (this.frozen) return;
    this.forget(file);
    realCacheIo.unlinkAsync(file, done);
  }

  truncate(file: string, length: number): void {
    if (this.frozen) return;
    this.check('truncate', file);
    realCacheIo.truncate(file, length);
  }

  async fsyncDir(dir: string): Promise<void> {
    if (this.frozen) return new Promise<void>(() => {});
    this.check('fsyncDir', dir);
    await realCacheIo.fsyncDir(dir);
  }

  /** What the last completed fdatasync of `file` left on the disk (undefined: never synced). */
  syncedContent(file: string): Buffer | undefined {
    return this.shadow.get(fs.statSync(file).ino);
  }

  private forget(file: string): void {
    try {
      this.shadow.delete(fs.statSync(file).ino);
    } catch {
      // gone already
    }
  }

  private check(op: IoOp, file: string): void {
    const i = this.rules.findIndex((r) => r.op === op && r.left > 0 && r.match(file));
    if (i < 0) return;
    const r = this.rules[i];
    if (--r.left === 0) this.rules.splice(i, 1);
    this.injected++;
    throw errnoError(r.code, op, file);
  }

  private deadFd(): number {
    if (this.devNull < 0) this.devNull = fs.openSync('/dev/null', 'r+');
    return this.devNull;
  }
}


function readAll(fd: number): Buffer {
  const size = fs.fstatSync(fd).size;
  const buf = Buffer.alloc(size);
  let got = 0;
  while (got < size) {
    const n = fs.readSync(fd, buf, got, size - got, got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}
