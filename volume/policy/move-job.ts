/**
 * Moving a vPool to another backend (docs/scrubbing.md, "Policy updates"): while the vPool serves through a
 * MirrorStore (./mirror-store.ts: reads from the old backend X, writes to both), the move job makes the new
 * backend Y equal to X object by object (MirrorStore.sync, under each key's write lock), passes until one
 * changes nothing, then switches:
 *   1. `moved.json` ({to}) is put in X: from then on X refuses to mount ("moved to Y");
 *   2. the mirror switches: reads and writes go to Y alone;
 *   3. the state directory's `move.json` says `moved` (the next mount opens Y alone even with moveFrom still set);
 *   4. every object of X but `moved.json` is deleted (a crash before that ends: the next mount finishes it).
 * A crash before 1: the next mount mirrors again and the job starts over from the lists (what is done is "Y
 * has the same bytes"); X is complete throughout. A crash after 1: Y is complete (verified, and every write
 * since went to both), so the next mount opens Y alone. Nothing is deleted from X before the switch.
 *
 * The markers: `move-target.json` ({from}) in Y, written before anything else goes there, is what lets a
 * restarted move reuse a non-empty Y (a Y holding anything else is refused: the job deletes from Y what X has
 * not); `moved.json` in X. Both are plain objects at the root and are never copied.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BackendError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { openBlobStore } from '../backend/index.js';
import { MOVED_MARKER } from '../backend/open-backend.js';
import { sleep, withRetry } from '../backend/retry.js';
import type { BlobStore } from '../backend/types.js';
import { MirrorStore } from './mirror-store.js';

const log = logger('move');
export const MOVE_TARGET_MARKER = 'move-target.json';
/** In the state directory: `{from, to, phase: 'copying' | 'moved'}`. */
export const LOCAL_MOVE = 'move.json';
const MAX_PASSES = 4;

export type MoveState = 'idle' | 'running' | 'done' | 'failed';

export interface MoveStatus {
  state: MoveState;
  from: string;
  to: string;
  pass: number;
  listed: number;
  checked: number;
  copied: number;
  deleted: number;
  bytesCopied: number;
  /** Objects deleted from the old backend after the switch. */
  drained: number;
  startedAt: number | null;
  finishedAt: number | null;
  error: string | null;
}

export async function readJson(store: BlobStore, key: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse((await store.get(key)).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') return null;
    throw err;
  }
}

async function writeLocal(dir: string, v: Record<string, unknown>): Promise<void> {
  const file = path.join(dir, LOCAL_MOVE);
  await writeFile(`${file}.tmp`, `${JSON.stringify(v)}\n`);
  await rename(`${file}.tmp`, file);
}

/**
 * Opens the backends of a move from `fromUrl` to `toUrl`: a MirrorStore while the move is unfinished, or Y
 * alone (`moved`) once it is. Y must be empty or the target of this same move.
 */
export async function openMove(fromUrl: string, toUrl: string, stateDir: string): Promise<{ store: BlobStore; mirror: MirrorStore | null }> {
  const to = await openBlobStore(toUrl);
  const from = await openBlobStore(fromUrl);
  if (to.url === from.url) {
    await Promise.all([to.close(), from.close()]);
    throw new BackendError('INVALID', `moveFrom and backend are the same backend (${to.url}): nothing to move`, { url: to.url });
  }
  let local: { phase?: string; from?: string; to?: string } | null = null;
  try {
    local = JSON.parse(await readFile(path.join(stateDir, LOCAL_MOVE), 'utf8')) as { phase?: string };
  } catch {
    local = null;
  }
  const moved = local?.phase === 'moved' && local.from === from.url && local.to === to.url ? { to: to.url } : await readJson(from, MOVED_MARKER);
  if (moved !== null) {
    if (String(moved.to) !== to.url) throw new BackendError('INVALID', `${from.url} was moved to ${String(moved.to)}, not to ${to.url}`, { url: from.url });
    // a crash after the switch may have left the old backend undrained: finish that first
    await drainOld(from)
      .catch((err: unknown) => log.warn('move: the old backend could not be drained now (the next mount with moveFrom tries again)', { url: from.url, error: String(err) }))
      .finally(() => from.close());
    await writeLocal(stateDir, { from: from.url, to: to.url, phase: 'moved' });
    log.info('the move is finished: using the new backend alone (moveFrom can be removed)', { to: to.url });
    return { store: to, mirror: null };
  }
  const target = await readJson(to, MOVE_TARGET_MARKER);
  if (target === null) {
    const there = await to.list('');
    if (there.length > 0) throw new BackendError('INVALID', `cannot move the vPool to ${to.url}: it is not empty (${there.length} objects, e.g. ${there[0]}) and not the target of this move`, { url: to.url });
    await to.put(MOVE_TARGET_MARKER, Buffer.from(`${JSON.stringify({ from: from.url })}\n`));
  } else if (target.from !== from.url) {
    throw new BackendError('INVALID', `cannot move the vPool to ${to.url}: it is the target of a move from ${String(target.from)}`, { url: to.url });
  }
  await writeLocal(stateDir, { from: from.url, to: to.url, phase: 'copying' });
  log.warn('moving the vPool to another backend: writes go to both, reads to the old one until the move job switches', { from: from.url, to: to.url });
  const mirror = new MirrorStore(from, to);
  return { store: mirror, mirror };
}

/** After the switch: every object of the old backend but `moved.json` is deleted (idempotent). */
export async function drainOld(from: BlobStore, gate?: (what: string) => Promise<void>): Promise<number> {
  const keys = (await withRetry(() => from.list(''), { what: `move: listing ${from.url}`, log })).filter((k) => k !== MOVED_MARKER);
  for (const k of keys) {
    await gate?.(`move: drain ${k}`);
    await withRetry(() => from.delete(k), { what: `move: deleting ${k} from ${from.url}`, log });
  }
  if (keys.length > 0) log.info('move: the old backend is drained (only its moved.json is left)', { url: from.url, deleted: keys.length });
  return keys.length;
}

export interface MoveOptions {
  mirror: MirrorStore;
  stateDir: string;
  gate?: (what: string) => Promise<void>;
  objectsPerSecond?: number;
  /** Called before each object (tests: a kill at a chosen point). */
  checkpoint?: (key: string, status: MoveStatus) => Promise<void>;
}

export class MoveJob {
  private st: MoveStatus;
  private running: Promise<MoveStatus> | null = null;
  private stopping = false;

  constructor(private readonly opts: MoveOptions) {
    this.st = {
      state: 'idle', from: opts.mirror.from.url, to: opts.mirror.to.url, pass: 0, listed: 0, checked: 0, copied: 0, deleted: 0, bytesCopied: 0, drained: 0,
      startedAt: null, finishedAt: null, error: null,
    };
  }

  status(): MoveStatus {
    return { ...this.st };
  }

  start(): Promise<MoveStatus> {
    if (this.opts.mirror.moved) return Promise.resolve(this.status());
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private gate(what: string): Promise<void> {
    return this.opts.gate?.(what) ?? Promise.resolve();
  }

  private async run(): Promise<MoveStatus> {
    const { mirror } = this.opts;
    this.stopping = false;
    Object.assign(this.st, { state: 'running', pass: 0, copied: 0, deleted: 0, bytesCopied: 0, startedAt: Date.now(), finishedAt: null, error: null });
    log.info('move: started', { from: this.st.from, to: this.st.to });
    try {
      for (;;) {
        if (this.st.pass >= MAX_PASSES) throw new BackendError('BACKEND', `the new backend still differed after ${MAX_PASSES} passes: another process writes the old one?`);
        const changed = await this.pass();
        if (this.stopping) {
          this.st.state = 'idle';
          log.info('move: stopped (the vPool is closing); it goes on at the next mount', this.counts());
          return this.status();
        }
        if (changed === 0) break;
      }
      // the switch (see the header): X refuses to mount first, then the mirror turns, then the local record
      await withRetry(async () => {
        await this.gate(`move: ${MOVED_MARKER}`);
        await mirror.from.put(MOVED_MARKER, Buffer.from(`${JSON.stringify({ to: mirror.to.url, at: new Date().toISOString() })}\n`));
      }, { what: 'move: marking the old backend moved', log });
      await mirror.switchToTarget();
      await writeLocal(this.opts.stateDir, { from: this.st.from, to: this.st.to, phase: 'moved' });
      await mirror.to.delete(MOVE_TARGET_MARKER).catch(() => undefined);
      this.st.drained = await drainOld(mirror.from, (w) => this.gate(w));
      this.st.state = 'done';
      log.info('move: done, the vPool now lives in the new backend alone; set backend to it and remove moveFrom', { ...this.counts(), to: this.st.to });
    } catch (err) {
      this.st.state = 'failed';
      this.st.error = err instanceof Error ? err.message : String(err);
      log.error('move: failed; the vPool stays on the old backend (writes still go to both)', { error: this.st.error, ...this.counts() });
    } finally {
      this.st.finishedAt = Date.now();
    }
    return this.status();
  }

  private counts(): Record<string, number> {
    const { pass, listed, checked, copied, deleted, bytesCopied } = this.st;
    return { pass, listed, checked, copied, deleted, bytesCopied };
  }

  /** One pass over both lists; returns how many objects of Y it changed. */
  private async pass(): Promise<number> {
    const { mirror } = this.opts;
    this.st.pass++;
    const list = async (s: BlobStore) => withRetry(() => s.list(''), { what: `move: listing ${s.url}`, log, cancelled: () => this.stopping });
    const keys = [...new Set([...(await list(mirror.from)), ...(await list(mirror.to))])]
      .filter((k) => k !== MOVED_MARKER && k !== MOVE_TARGET_MARKER).sort();
    this.st.listed = keys.length;
    this.st.checked = 0;
    const minGapMs = this.opts.objectsPerSecond ? 1000 / this.opts.objectsPerSecond : 0;
    const every = Math.max(1, Math.ceil(keys.length / 10));
    let changed = 0;
    let last = 0;
    for (const key of keys) {
      if (this.stopping) return changed;
      await this.opts.checkpoint?.(key, this.status());
      const wait = last + minGapMs - Date.now();
      if (wait > 0) await sleep(wait);
      const r = await withRetry(() => mirror.sync(key, () => this.gate(`move ${key}`)), { what: `move ${key}`, log, cancelled: () => this.stopping });
      this.st.checked++;
      if (r !== 'same') {
        last = Date.now();
        changed++;
        if (r === 'copied') {
          this.st.copied++;
          this.st.bytesCopied += (await mirror.to.head(key))?.size ?? 0;
        } else this.st.deleted++;
      }
      if (this.st.checked % every === 0) log.info(`move: pass ${this.st.pass}, ${this.st.checked}/${keys.length} objects checked`, this.counts());
    }
    return changed;
  }
}
