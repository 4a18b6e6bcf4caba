/**
 * The rekey job: the background rewrite of a key rotation (docs/encryption.md, "Key rotation"). It walks every
 * object of the backend and re-encrypts, under the current key, each one an old key wrote
 * (EncryptedBlobStore.rewrite: read and authenticated with the old key, put whole with the new one, under the
 * object's write lock, so the vPool's own puts and deletes of that key cannot interleave). Reads and writes
 * go on meanwhile: a put replaces an object atomically, and a reader decrypts the old object or the new one
 * (the store holds both keys; a read that meets the new object with the old header re-reads the header).
 *
 * Restartable by construction: which objects are done is in the objects themselves (the key id in each
 * header), so a job killed at any point (kill -9 of the daemon) starts again from the list and skips every
 * object already under the new key (a 64-byte read each). Nothing is ever deleted.
 *
 * Done when a whole pass over the list finds no object under an old key (objects created while a pass runs
 * are written by this process with the new key; a second pass also catches any other writer's): then the
 * backend's marker drops the old key ids (open-backend.ts finishRotation) and the new key alone mounts.
 *
 * A backend write of the job passes the claim's gate (a router that lost the vPool writes nothing); transient
 * backend failures are retried; an object that cannot be read with any key given (CHECKSUM: damaged, or a key
 * not given) is listed in `failures` and the job ends 'failed' without finishing the rotation.
 */
import { BackendError, isCode } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { EncryptedBlobStore } from '../backend/encrypted-store.js';
import { ENCRYPTION_MARKER, MOVED_MARKER, finishRotation } from '../backend/open-backend.js';
import { MOVE_TARGET_MARKER } from './move-job.js';
import { sleep, withRetry } from '../backend/retry.js';

const log = logger('rekey');
/** Passes after which objects under old keys still appearing is an error (another writer with an old key). */
const MAX_PASSES = 4;

export type RekeyState = 'idle' | 'running' | 'done' | 'failed';

export interface RekeyStatus {
  state: RekeyState;
  /** The key every object is being moved to (hex key id). */
  keyId: string;
  /** Key ids the backend's marker still lists as possibly in use (empty once the rotation is finished). */
  retiring: string[];
  /** The pass over the object list (1, 2…); a pass that rewrites nothing ends the job. */
  pass: number;
  /** Objects in this pass's list, and how many of them are checked so far. */
  listed: number;
  checked: number;
  /** Since the job started: objects re-encrypted, their plaintext bytes, objects deleted before their turn. */
  rewritten: number;
  bytesRewritten: number;
  gone: number;
  /** Objects that could not be rewritten (key: why). */
  failures: Array<{ key: string; error: string }>;
  startedAt: number | null;
  finishedAt: number | null;
  error: string | null;
}

export interface RekeyOptions {
  store: EncryptedBlobStore;
  /** The claim's gate (volume/claim/claim.ts): runs before each backend write. */
  gate?: (what: string) => Promise<void>;
  /** The state directory: its copy of the marker follows the rotation's end. */
  localDir?: string;
  /** A budget: at most this many objects rewritten per second (default: no limit). */
  objectsPerSecond?: number;
  /** Called before each object (tests: a kill at a chosen point). */
  checkpoint?: (key: string, status: RekeyStatus) => Promise<void>;
}

export class RekeyJob {
  private st: RekeyStatus;
  private running: Promise<RekeyStatus> | null = null;
  private stopping = false;

  constructor(private readonly opts: RekeyOptions) {
    this.st = {
      state: 'idle', keyId: opts.store.keyId.toString('hex'), retiring: [...opts.store.retiring], pass: 0, listed: 0, checked: 0,
      rewritten: 0, bytesRewritten: 0, gone: 0, failures: [], startedAt: null, finishedAt: null, error: null,
    };
  }

  /** A copy of the status (for the API, the CLI, the metrics). */
  status(): RekeyStatus {
    return { ...this.st, retiring: [...this.opts.store.retiring], failures: [...this.st.failures] };
  }

  /** True while a rotation is unfinished (the marker lists old key ids). */
  get pending(): boolean {
    return this.opts.store.retiring.length > 0;
  }

  /** Starts the job, or joins the one running; resolves with its final status (never rejects). */
  start(): Promise<RekeyStatus> {
    if (this.running !== null) return this.running;
    // a finished rotation stays done: nothing is under the old key any more (`vpoolfs rekey` asking after the job
    // ended ran a pass that rewrote nothing and reset the counters; a new rotation is a new job, at the next mount)
    if (this.st.state === 'done') return Promise.resolve(this.status());
    this.stopping = false;
    this.running = this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Stops after the object in hand (the vPool is closing); resolves once it has. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async run(): Promise<RekeyStatus> {
    const { store } = this.opts;
    const t0 = Date.now();
    Object.assign(this.st, { state: 'running', pass: 0, listed: 0, checked: 0, rewritten: 0, bytesRewritten: 0, gone: 0, failures: [], startedAt: t0, finishedAt: null, error: null });
    log.info('rekey: started', { url: store.url, keyId: this.st.keyId, retiring: store.retiring });
    try {
      for (;;) {
        if (this.st.pass >= MAX_PASSES) {
          throw new BackendError('BACKEND', `objects under an old key still appeared after ${MAX_PASSES} passes: another process writes with an old key (a remote scrubber started before the rotation?); stop it and run vpoolfs rekey again`);
        }
        const rewrittenBefore = this.st.rewritten;
        await this.pass();
        if (this.stopping) {
          this.st.state = 'idle';
          log.info('rekey: stopped (the vPool is closing); it goes on at the next mount', { ...this.counts() });
          return this.status();
        }
        if (this.st.failures.length > 0) {
          throw new BackendError('CHECKSUM', `${this.st.failures.length} object(s) could not be rewritten (first: ${this.st.failures[0].key}: ${this.st.failures[0].error})`);
        }
        if (this.st.rewritten === rewrittenBefore) break;
      }
      await withRetry(() => finishRotation(store, { localDir: this.opts.localDir, gate: () => this.gate(`rekey: finish (${ENCRYPTION_MARKER})`) }), { what: 'rekey: finishing the rotation', log, cancelled: () => this.stopping });
      this.st.state = 'done';
      log.info('rekey: done, every object is under the new key', { ...this.counts(), seconds: (Date.now() - t0) / 1000 });
    } catch (err) {
      this.st.state = 'failed';
      this.st.error = err instanceof Error ? err.message : String(err);
      log.error('rekey: failed; the old key(s) are still needed (vpoolfs rekey runs it again)', { error: this.st.error, ...this.counts() });
    } finally {
      this.st.finishedAt = Date.now();
    }
    return this.status();
  }

  private counts(): Record<string, number> {
    const { pass, listed, checked, rewritten, bytesRewritten, gone } = this.st;
    return { pass, listed, checked, rewritten, bytesRewritten, gone, failures: this.st.failures.length };
  }

  private async gate(what: string): Promise<void> {
    await this.opts.gate?.(what);
  }

  /** One pass over the backend's list. */
  private async pass(): Promise<void> {
    const { store } = this.opts;
    this.st.pass++;
    const keys = (await withRetry(() => store.list(''), { what: 'rekey: listing the backend', log, cancelled: () => this.stopping }))
      .filter((k) => k !== ENCRYPTION_MARKER && k !== MOVED_MARKER && k !== MOVE_TARGET_MARKER); // plain markers
    this.st.listed = keys.length;
    this.st.checked = 0;
    this.st.failures = [];
    const every = Math.max(1, Math.ceil(keys.length / 10));
    const minGapMs = this.opts.objectsPerSecond ? 1000 / this.opts.objectsPerSecond : 0;
    let lastPut = 0;
    for (const key of keys) {
      if (this.stopping) return;
      await this.opts.checkpoint?.(key, this.status());
      const r = await withRetry(async () => {
        try {
          // the budget is paced here, outside the object's write lock (the vPool's own puts never wait for it)
          const id = await store.objectKeyId(key);
          if (id === null) return { outcome: 'gone' as const, bytes: 0 };
          if (id === this.st.keyId) return { outcome: 'current' as const, bytes: 0 };
          const wait = lastPut + minGapMs - Date.now();
          if (wait > 0) await sleep(wait);
          return await store.rewrite(key, () => this.gate(`rekey ${key}`));
        } catch (err) {
          if (isCode(err, 'CHECKSUM')) return { outcome: 'failed' as const, bytes: 0, error: (err as Error).message };
          throw err;
        }
      }, { what: `rekey ${key}`, log, cancelled: () => this.stopping });
      this.st.checked++;
      if (r.outcome === 'rewritten') {
        lastPut = Date.now();
        this.st.rewritten++;
        this.st.bytesRewritten += r.bytes;
      } else if (r.outcome === 'gone') this.st.gone++;
      else if (r.outcome === 'failed') this.st.failures.push({ key, error: 'error' in r ? r.error : '' });
      if (this.st.checked % every === 0) log.info(`rekey: pass ${this.st.pass}, ${this.st.checked}/${keys.length} objects checked`, this.counts());
    }
  }
}
