/**
 * `vpoolfs create FILE SIZE` and `vpoolfs info FILE`: management verbs that go through the mount with
 * plain file-system calls, so that a shell script and the CLI do the same thing.
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
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

/** Size and space really written, from stat. The full view (user.vdisk.info) comes with the snapshot issue. */
export async function diskInfo(file: string, json: boolean): Promise<void> {
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
