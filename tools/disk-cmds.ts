/**
 * `vpoolfs create FILE SIZE` and `vpoolfs info FILE`: management verbs that go through the mount with
 * plain file-system calls, so that a shell script and the CLI do the same thing.
 */
import { execFile } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, parseSize } from './config.js';

/** Creates a thin vDisk of SIZE bytes: open(O_CREAT|O_EXCL) + ftruncate. An existing file is not touched. */
export async function createDisk(file: string, sizeText: string, json: boolean): Promise<void> {
  const size = parseSize(sizeText);
  let fh;
  try {
    fh = await open(file, 'wx');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') throw new ConfigError(`${file}: exists already (create makes new vDisks only; use truncate -s to resize)`);
    throw new ConfigError(`${file}: cannot create it (${e.code}: ${e.message})`);
  }
  try {
    await fh.truncate(size);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`${file}: created, but setting the size to ${size} failed (${e.code})`);
  } finally {
    await fh.close();
  }
  if (json) console.log(JSON.stringify({ path: path.resolve(file), size }));
  else console.log(`created ${file}: ${size} bytes`);
}

/** The `user.vdisk.info` view (JSON), or undefined while the mount does not answer it (ENOTSUP until the snapshot issue). */
async function infoXattr(file: string): Promise<unknown> {
  try {
    const { stdout } = await promisify(execFile)('getfattr', ['--only-values', '-n', 'user.vdisk.info', '--', file], { encoding: 'utf8' });
    return JSON.parse(stdout) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The vDisk's `user.vdisk.info` view when the mount answers it; until then (the snapshot issue) its size
 * and the space really written, from stat.
 */
export async function diskInfo(file: string, json: boolean): Promise<void> {
  const view = await infoXattr(file);
  if (view !== undefined) {
    console.log(json ? JSON.stringify(view) : infoText(view as Record<string, unknown>));
    return;
  }
  let st;
  try {
    st = await stat(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`${file}: ${e.code}`);
  }
  if (!st.isFile()) throw new ConfigError(`${file}: not a vDisk (not a regular file)`);
  const info = { path: path.resolve(file), size: st.size, allocatedBytes: st.blocks * 512 };
  const note = 'the full view (snapshots, clones, DTL, backend bytes) comes with the snapshot issue (user.vdisk.info is not implemented yet)';
  if (json) {
    console.log(JSON.stringify(info));
    console.error(`note: ${note}`);
  } else {
    console.log(`path:           ${info.path}\nsize:           ${info.size}\nallocatedBytes: ${info.allocatedBytes}`);
    console.log(`note: ${note}`);
  }
}

/** `key: value` lines, nested objects flattened (`dtl.mode: none`), lists comma-separated. */
function infoText(view: Record<string, unknown>, prefix = ''): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(view)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) lines.push(infoText(v as Record<string, unknown>, `${prefix}${k}.`));
    else lines.push(`${prefix}${k}: ${Array.isArray(v) ? v.join(', ') || '-' : String(v)}`);
  }
  return lines.join('\n');
}
