/**
 * A vPool on temp directories for the volume tests: a state directory and a file:// backend under one
 * fresh directory in os.tmpdir(), small SCOs (8 clusters) and TLogs (2 SCOs) so that a few writes cross
 * SCO and TLog boundaries, nothing shipped by age unless asked. Every vPool opened through `open()` is
 * closed in teardown (if the test did not), then the directory is removed.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openVPool } from '../../volume/vpool.js';
import type { VPool } from '../../volume/types.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';
import { isCode } from '../../util/errors.js';

export const CS = 4096;
export const SLOT_SIZE = 32 + CS;

export interface PoolEnv {
  root: string;
  state: string;
  backendDir: string;
  backendUrl: string;
  /** Opens the vPool on this environment; `extra` overrides the defaults. */
  open(extra?: Partial<VPoolOptions>): Promise<VPool>;
  /** Closes `pool` and forgets it (teardown will not close it again). */
  close(pool: VPool): Promise<void>;
}

export function poolEnv(t: ExecutionContext, defaults: Partial<VPoolOptions> = {}): PoolEnv {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-vt-'));
  const state = path.join(root, 'state');
  const backendDir = path.join(root, 'backend');
  const backendUrl = `file://${backendDir}`;
  const openPools = new Set<VPool>();
  t.teardown(async () => {
    for (const p of openPools) {
      // a test that failed half-way may leave a backend that never takes the data: do not hang on it
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([p.close().catch(() => undefined), new Promise((r) => { timer = setTimeout(r, 20_000); })]);
      clearTimeout(timer);
    }
    fs.rmSync(root, { recursive: true, force: true });
  });
  return {
    root, state, backendDir, backendUrl,
    async open(extra = {}) {
      const pool = await openVPool({
        name: 'test', stateDir: state, backendUrl, scoClusters: 8, tlogScos: 2, scoMaxAgeMs: 3_600_000,
        writeCacheBytes: 64 * 2 ** 20, readCacheBytes: 16 * 2 ** 20, ...defaults, ...extra,
      });
      openPools.add(pool);
      return pool;
    },
    async close(pool) {
      openPools.delete(pool);
      await pool.close();
    },
  };
}

/** Deterministic, position-dependent bytes: `pattern(seed, n)` differs for every seed and offset. */
export function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = (x >>> 16) & 0xff;
  }
  return b;
}

/** Flips every bit of the byte at `pos` in `file`. */
export function flipByte(file: string, pos: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, pos) !== 1) throw new Error(`${file} has no byte ${pos}`);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, pos);
  } finally {
    fs.closeSync(fd);
  }
}

/** Total bytes of the regular files below `dir` (0 if it does not exist). */
export function treeBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    // a file may go between the listing and the stat (read-cache eviction, a temp file renamed into place)
    if (e.isFile()) total += fs.statSync(path.join(e.parentPath, e.name), { throwIfNoEntry: false })?.size ?? 0;
  }
  return total;
}

/** Regular files below `dir`, relative paths, sorted. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** Awaits `p` and returns the error code it rejected with; fails the test if it resolved. */
export async function codeOf(t: ExecutionContext, p: Promise<unknown> | (() => unknown), what: string): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return (err as { code?: string }).code;
  }
  t.fail(`${what}: expected an error, it succeeded`);
  return undefined;
}

export { isCode };

/**
 * Waits (up to 30 s: a liveness bound, not a speed one) until `file` is gone, and says whether it is. An
 * evicted SCO's unlink runs off the event loop (local-cache.ts evictSco), so right after the write or sync
 * that evicted it the file may still be there — and a read would still find it locally.
 */
export async function gone(file: string): Promise<boolean> {
  for (const deadline = Date.now() + 30_000; fs.existsSync(file) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 5));
  return !fs.existsSync(file);
}
