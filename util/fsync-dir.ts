/**
 * fsync of a directory: makes the creation, rename or removal of its entries durable (a file's own fsync
 * does not cover its name). Used wherever a file is created or renamed into place.
 */
import fs from 'node:fs';

/** Synchronous, for start-up and code already on the synchronous path. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Off the event loop. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  const h = await fs.promises.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
