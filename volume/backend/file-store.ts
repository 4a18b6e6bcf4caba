/**
 * FileBlobStore: the `file:///abs/dir` backend. Each object is a file under the root directory; the
 * `/`-separated segments of its key become directories (key `a/b/c` is the file `<root>/a/b/c`).
 *
 * - put is atomic and durable: the data goes to a unique temp file in the target's directory, which is
 *   fsynced and renamed over the target; then the directory is fsynced (and, the first time this store
 *   writes into a directory, every ancestor up to the root, so that new directory entries survive too).
 *   Temp files are named `.tmp~…`: `~` never occurs in a key, so list skips them and no key can collide.
 *   A crash can leave temp files behind; they are invisible to every method.
 * - get/getRange open the file and use positional reads; a directory where an object is expected reads as
 *   missing (NOT_FOUND / head null).
 * - list walks only the deepest directory its prefix names and returns keys sorted in byte order.
 * - delete is idempotent and removes parent directories it leaves empty (never the root).
 * - Errors: NOT_FOUND, INVALID (./keys.ts), NO_SPACE for ENOSPC/EDQUOT, CLOSED, else BACKEND with the key
 *   in `context` and the fs error as `cause`.
 * Limitation of this layout: a key and a key below it (`a` and `a/b`) cannot both exist; the second put
 * fails with BACKEND.
 */
import { constants as fsConstants, promises as fsp, type Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackendError } from '../../util/errors.js';
import { fsyncDirAsync } from '../../util/fsync-dir.js';
import type { BlobStore, ListOptions } from './types.js';
import { checkRangeWithin, compareKeys, validateKey, validatePrefix, validateRangeArgs } from './keys.js';

/** Every temp file name starts with this; `~` is outside the key alphabet. */
export const TEMP_PREFIX = '.tmp~';
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Maps an fs error to a BackendError: ENOSPC/EDQUOT → NO_SPACE, anything else → BACKEND. */
export function mapFsError(err: unknown, op: string, key: string, url: string): BackendError {
  if (err instanceof BackendError) return err;
  const code = errno(err);
  const message = `${op} ${key || '(root)'} on ${url} failed: ${err instanceof Error ? err.message : String(err)}`;
  const context = { key, op, url, errno: code };
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BackendError('NO_SPACE', message, context, { cause: err });
  return new BackendError('BACKEND', message, context, { cause: err });
}

const WHY: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'not permitted',
  EROFS: 'a read-only filesystem',
  ENOENT: 'that filesystem takes no new directories there',
  ENOSPC: 'no space left',
  ENOTDIR: 'a path component is a file',
};

/**
 * Creates the store's root directory and its missing parents one level at a time, returning the first one
 * created (undefined if it was there). Not `mkdir -p` from node:fs: on a filesystem that refuses new entries
 * with ENOENT (procfs, sysfs) that one loops forever. Every refusal names the directory and why.
 */
async function makeRoot(root: string, url: string): Promise<string | undefined> {
  const missing: string[] = [];
  let cur = root;
  for (;;) {
    let st;
    try {
      st = await fsp.stat(cur);
    } catch (err) {
      const code = errno(err);
      if (code !== 'ENOENT') throw new BackendError('BACKEND', `the backend ${url}: cannot look at ${cur} (${code}: ${WHY[code ?? ''] ?? (err as Error).message})`, { url, path: cur, errno: code });
      missing.unshift(cur);
      if (path.dirname(cur) === cur) break;
      cur = path.dirname(cur);
      continue;
    }
    if (!st.isDirectory()) {
      const what = cur === root ? `${root} is a file, not a directory` : `${cur} (a parent of ${root}) is a file, not a directory`;
      throw new BackendError('INVALID', `the backend ${url}: ${what}`, { url, path: cur });
    }
    break;
  }
  for (const dir of missing) {
    try {
      await fsp.mkdir(dir);
    } catch (err) {
      const code = errno(err);
      if (code === 'EEXIST') continue; // made meanwhile by someone else
      throw new BackendError('BACKEND', `the backend ${url}: cannot create the directory ${dir} (${code}: ${WHY[code ?? ''] ?? (err as Error).message})`, { url, path: dir, errno: code });
    }
  }
  return missing[0];
}

export class FileBlobStore implements BlobStore {
  private closed = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Directories whose entry in their parent is known to be on disk (fsynced by this store). */
  private readonly durableDirs = new Set<string>();
  private tempCounter = 0;

  private constructor(
    readonly url: string,
    readonly root: string,
  ) {}

  /** Opens (creating the root directory if needed) the store for a `file:///abs/dir` URL. */
  static async open(url: string): Promise<FileBlobStore> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BackendError('INVALID', `not a valid URL: ${url}`, { url });
    }
    if (parsed.protocol !== 'file:') throw new BackendError('INVALID', `not a file:// URL: ${url}`, { url });
    if (parsed.host !== '' && parsed.host !== 'localhost') throw new BackendError('INVALID', `file:// URL must not name a host: ${url}`, { url });
    if (parsed.search !== '' || parsed.hash !== '') throw new BackendError('INVALID', `file:// URL takes no query or fragment: ${url}`, { url });
    const root = path.resolve(fileURLToPath(parsed));
    const store = new FileBlobStore(pathToFileURL(root).href, root);
    try {
      const first = await makeRoot(root, url);
      if (first !== undefined) await store.syncUpTo(root, path.dirname(first));
      else store.durableDirs.add(root);
    } catch (err) {
      throw mapFsError(err, 'open', '', url);
    }
    return store;
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.run('put', key, async () => {
      validateKey(key);
      if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `put ${key}: data is not a Uint8Array`, { key });
      await this.putVia(key, async (tmp) => {
        const fh = await fsp.open(tmp, 'wx', 0o644);
        return { fh, fill: () => fh.writeFile(data) };
      });
    });
  }

  /**
   * put of a local file's bytes (BlobStore.putFile): the temp file is made by copy_file_range(2) (libuv's
   * copyfile, in one trip through its pool: page cache to page cache, the bytes never enter this process),
   * then fsynced and renamed like put's.
   */
  putFile(key: string, file: string): Promise<number> {
    return this.run('putFile', key, async () => {
      validateKey(key);
      return this.putVia(key, async (tmp) => {
        await fsp.copyFile(file, tmp, fsConstants.COPYFILE_EXCL);
        return { fh: await fsp.open(tmp, 'r+') };
      });
    });
  }

  /**
   * The body of put: `create` makes a unique temp file in the target's directory (exclusively) and hands
   * back its handle and what fills it; then it is fsynced, renamed over the target, the directory fsynced.
   * Resolves to the bytes stored.
   */
  private async putVia(key: string, create: (tmp: string) => Promise<{ fh: FileHandle; fill?: () => Promise<void> }>): Promise<number> {
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    // A concurrent delete may remove `dir` between mkdir and the temp file's creation: then retry.
    for (let attempt = 1; ; attempt++) {
      const tmp = path.join(dir, `${TEMP_PREFIX}${process.pid}-${++this.tempCounter}-${randomBytes(4).toString('hex')}`);
      let made: { fh: FileHandle; fill?: () => Promise<void> };
      try {
        await fsp.mkdir(dir, { recursive: true });
        made = await create(tmp);
      } catch (err) {
        await fsp.unlink(tmp).catch(() => undefined); // a copy that failed half-way leaves its temp file
        if (errno(err) === 'ENOENT' && attempt < 10) continue; // the directory went (or, for putFile, the source is missing: 10 tries, then the error)
        if (errno(err) === 'ENOTDIR' || errno(err) === 'EEXIST') throw this.conflict(key, err);
        throw err;
      }
      let size: number;
      try {
        try {
          await made.fill?.();
          await made.fh.sync();
          size = (await made.fh.stat()).size;
        } finally {
          await made.fh.close();
        }
        await fsp.rename(tmp, target);
      } catch (err) {
        await fsp.unlink(tmp).catch(() => undefined);
        if (errno(err) === 'EISDIR' || errno(err) === 'ENOTEMPTY') throw this.conflict(key, err);
        throw err;
      }
      await this.syncUpTo(dir);
      return size;
    }
  }

  /** Exclusive create: the temp file is fsynced, then link(2)ed to the key (EEXIST: someone was first). */
  createExclusive(key: string, data: Uint8Array): Promise<boolean> {
    return this.run('createExclusive', key, async () => {
      validateKey(key);
      if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `createExclusive ${key}: data is not a Uint8Array`, { key });
      const target = this.pathOf(key);
      const dir = path.dirname(target);
      await fsp.mkdir(dir, { recursive: true });
      const tmp = path.join(dir, `${TEMP_PREFIX}${process.pid}-${++this.tempCounter}-${randomBytes(4).toString('hex')}`);
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      try {
        await fsp.link(tmp, target);
      } catch (err) {
        if (errno(err) === 'EEXIST') return false;
        throw err;
      } finally {
        await fsp.unlink(tmp).catch(() => undefined);
      }
      await this.syncUpTo(dir);
      return true;
    });
  }

  get(key: string): Promise<Buffer> {
    return this.run('get', key, async () => {
      validateKey(key);
      return this.withFile(key, (fh, size) => readExact(fh, 0, size));
    });
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return this.run('getRange', key, async () => {
      validateKey(key);
      validateRangeArgs(key, offset, length);
      return this.withFile(key, (fh, size) => {
        checkRangeWithin(key, offset, length, size);
        return readExact(fh, offset, length);
      });
    });
  }

  /** The object's file (see BlobStore.localPath): the store writes every object whole and renames it in place. */
  localPath(key: string): string | null {
    try {
      validateKey(key);
    } catch {
      return null;
    }
    return this.pathOf(key);
  }

  head(key: string): Promise<{ size: number } | null> {
    return this.run('head', key, async () => {
      validateKey(key);
      try {
        const st = await fsp.stat(this.pathOf(key));
        return st.isFile() ? { size: st.size } : null;
      } catch (err) {
        if (MISSING.has(errno(err) ?? '')) return this.rootThere(err, null);
        throw err;
      }
    });
  }

  list(prefix: string, opts?: ListOptions): Promise<string[]> {
    return this.run('list', prefix, async () => {
      validatePrefix(prefix);
      const dirPart = prefix.slice(0, prefix.lastIndexOf('/') + 1);
      const out: string[] = [];
      await this.walk(dirPart === '' ? this.root : path.join(this.root, dirPart), dirPart, prefix.slice(dirPart.length), out, opts?.startAfter);
      return out.sort(compareKeys);
    });
  }

  delete(key: string): Promise<void> {
    return this.run('delete', key, async () => {
      validateKey(key);
      const file = this.pathOf(key);
      try {
        await fsp.unlink(file);
      } catch (err) {
        // Nothing there, or a directory (which is not an object): nothing to delete.
        if (MISSING.has(errno(err) ?? '')) return;
        throw err;
      }
      let dir = path.dirname(file);
      while (dir !== this.root) {
        try {
          await fsp.rmdir(dir);
        } catch {
          break; // not empty (or already gone): stop climbing
        }
        this.durableDirs.delete(dir);
        dir = path.dirname(dir);
      }
      await fsyncDirAsync(dir).catch((err: unknown) => {
        if (errno(err) !== 'ENOENT') throw err;
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
  }

  private pathOf(key: string): string {
    return path.join(this.root, key);
  }

  /** Runs one operation: CLOSED after close, fs errors mapped, tracked so close() can wait for it. */
  private run<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new BackendError('CLOSED', `blob store ${this.url} is closed`, { url: this.url, key }));
    const p = fn().catch((err: unknown) => {
      throw mapFsError(err, op, key, this.url);
    });
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Opens the object's file and hands it with its size to `fn`; NOT_FOUND when there is no such file. */
  private async withFile<T>(key: string, fn: (fh: FileHandle, size: number) => Promise<T>): Promise<T> {
    const notFound = (cause?: unknown) =>
      new BackendError('NOT_FOUND', `no object ${key} in ${this.url}`, { key, url: this.url }, cause === undefined ? undefined : { cause });
    let fh: FileHandle;
    try {
      fh = await fsp.open(this.pathOf(key), 'r');
    } catch (err) {
      if (MISSING.has(errno(err) ?? '')) throw await this.rootThere(err, notFound(err));
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw notFound();
      return await fn(fh, st.size);
    } finally {
      await fh.close();
    }
  }

  /**
   * A missing file or directory means "no such object" only while the backend's root directory is there: a root
   * that went away (deleted, a mount that is gone) or became a file must not read as an empty backend — a rebuild
   * would serve an empty vDisk. Returns `missing` when the root is a directory; throws BACKEND otherwise.
   */
  private async rootThere<T>(cause: unknown, missing: T): Promise<T> {
    let st;
    try {
      st = await fsp.stat(this.root);
    } catch (err) {
      throw new BackendError('BACKEND', `the backend ${this.url}: its directory ${this.root} is gone (${errno(err) ?? (err as Error).message}); nothing is read as missing while it is`, { url: this.url, path: this.root }, { cause });
    }
    if (!st.isDirectory()) throw new BackendError('BACKEND', `the backend ${this.url}: ${this.root} is not a directory any more; nothing is read as missing while it is not`, { url: this.url, path: this.root }, { cause });
    return missing;
  }

  /** Collects the keys of files under `dir` (whose key prefix is `keyPrefix`) with names starting with `namePrefix`. */
  /**
   * `startAfter`: the file:// form of S3's StartAfter. A directory is still read whole (readdir has no start
   * point), but keys at or before it are neither kept nor sorted, and a subdirectory whose keys all sort
   * before it is not entered.
   */
  private async walk(dir: string, keyPrefix: string, namePrefix: string, out: string[], startAfter?: string): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (MISSING.has(errno(err) ?? '')) return this.rootThere(err, undefined);
      throw err;
    }
    const subdirs: Promise<void>[] = [];
    for (const entry of entries) {
      const name = entry.name;
      // Temp files (`.tmp~…`) and anything else that cannot be a key segment are not objects.
      if (!name.startsWith(namePrefix) || !SEGMENT.test(name) || name === '.' || name === '..') continue;
      const key = keyPrefix + name;
      if (entry.isDirectory()) {
        // every key under `${key}/` sorts before startAfter when that does and is not inside it
        const sub = `${key}/`;
        if (startAfter !== undefined && sub < startAfter && !startAfter.startsWith(sub)) continue;
        subdirs.push(this.walk(path.join(dir, name), sub, '', out, startAfter));
      } else if (entry.isFile() && key.length <= 1024 && (startAfter === undefined || key > startAfter)) out.push(key);
    }
    await Promise.all(subdirs);
  }

  /**
   * fsyncs `dir`, then climbs while the directory just synced is not known to be durable in its parent,
   * fsyncing each parent, up to `stop` (default: the root).
   */
  private async syncUpTo(dir: string, stop = this.root): Promise<void> {
    let d = dir;
    const synced: string[] = [];
    for (;;) {
      await fsyncDirAsync(d);
      synced.push(d);
      if (d === stop || this.durableDirs.has(d) || path.dirname(d) === d) break;
      d = path.dirname(d);
    }
    for (const s of synced) this.durableDirs.add(s);
  }

  private conflict(key: string, cause: unknown): BackendError {
    return new BackendError(
      'BACKEND',
      `put ${key} on ${this.url}: the key conflicts with an object or directory on its path (the file backend cannot hold both a and a/b)`,
      { key, url: this.url, op: 'put', errno: errno(cause) },
      { cause },
    );
  }
}

/** Reads exactly `length` bytes at `position` (positional reads, looping over short reads). */
async function readExact(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file after ${position + done} bytes`);
    done += bytesRead;
  }
  return buf;
}
