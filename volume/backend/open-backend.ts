/**
 * openBackend(url, {encryptionKey}): the backend of a vPool as the daemon opens it — openBlobStore(url),
 * wrapped in EncryptedBlobStore when a key is given — with a plain marker object, `encryption.json`
 * ({format, keyId}), that makes key mistakes clear at mount time instead of at the first read:
 * - a key is given and the marker names another key id: EncryptionError WRONG_KEY (code INVALID);
 * - no key is given but the marker exists: EncryptionError MISSING_KEY (code INVALID);
 * - a key is given and there is no marker: the marker is written (first mount of an encrypted vPool).
 *
 * With `localDir` (the state directory), a copy of what the backend says — `{url, marker}`, marker null for a
 * plain backend — is kept in `<localDir>/backend-marker.json`, written whenever the marker is read from or
 * written to the backend. When the backend cannot be reached at open (a BackendError with
 * `context.unreachable`, e.g. a daemon restarted during an S3 outage), that copy stands in for it: the same
 * checks against it, and the store goes on (its calls fail, and are retried, until the backend is back).
 * Without a copy (this state directory was never mounted on this backend) the open fails: nothing can tell
 * whether the backend is encrypted, and plaintext must never go into an encrypted backend or the reverse.
 * An unreachable backend whose copy says plain, mounted with a key, is refused too (the marker cannot be written).
 * readKeyFile() reads a key file: exactly 32 raw bytes, or 64 hex characters (surrounding whitespace ignored).
 *
 * Key rotation (docs/encryption.md): `oldKeys` are keys objects may still be encrypted with. While a rotation
 * is unfinished the marker is `{format, keyId: NEW, oldKeyIds: [OLD…]}`:
 * - a key given with the marker's key among the old keys: the rotation begins — the marker names the new key
 *   and lists the old one(s) (one atomic put, before anything is written with the new key);
 * - the marker lists old key ids: each must be among the old keys given (MISSING_KEY otherwise: objects may
 *   still be under it); the old key given as the key: WRONG_KEY, saying the backend moved to the new one;
 * - finishRotation() (the rekey job, once no object under an old key remains) drops `oldKeyIds`: from then on
 *   the new key alone mounts.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BackendError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { EncryptedBlobStore, EncryptionError } from './encrypted-store.js';
import { openBlobStore } from './index.js';
import { answerWithin, OPEN_PROBE_MS } from './retry.js';
import type { BlobStore } from './types.js';

export const ENCRYPTION_MARKER = 'encryption.json';
/** Put in a backend a vPool was moved away from (volume/policy/move-job.ts): `{to}`; such a backend is refused. */
export const MOVED_MARKER = 'moved.json';
const FORMAT = 'vpoolfs-aes-256-gcm-chunked-1';
/** The local copy of the backend's marker, in the state directory. */
export const LOCAL_MARKER = 'backend-marker.json';
const log = logger('backend');

type Marker = { format?: string; keyId?: string; oldKeyIds?: string[] };

/** The local copy in `dir`: undefined when there is none (null marker = a plain backend). */
async function readLocalMarker(dir: string): Promise<{ marker: Marker | null } | undefined> {
  const file = path.join(dir, LOCAL_MARKER);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BackendError('INVALID', `${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`, { file });
  }
  try {
    const v = JSON.parse(text) as { marker?: Marker | null };
    if (v.marker === undefined || (v.marker !== null && typeof v.marker !== 'object')) throw new Error('no marker');
    return { marker: v.marker };
  } catch {
    throw new EncryptionError('DAMAGED', 'INVALID', `${file} (the local copy of the backend's ${ENCRYPTION_MARKER}) is damaged: remove it and mount while the backend is reachable`, { file });
  }
}

/** Writes the local copy atomically (temp file, rename). */
async function writeLocalMarker(dir: string, url: string, marker: Marker | null): Promise<void> {
  const file = path.join(dir, LOCAL_MARKER);
  await writeFile(`${file}.tmp`, `${JSON.stringify({ url, marker })}\n`);
  await rename(`${file}.tmp`, file);
}

/** The marker in the backend (null: none), or 'unreachable'. */

async function readBackendMarker(inner: BlobStore): Promise<Marker | null | { unreachable: string }> {
  try {
    if ((await answerWithin(inner.head(ENCRYPTION_MARKER), OPEN_PROBE_MS, inner.url)) === null) return null;
    const raw = await answerWithin(inner.get(ENCRYPTION_MARKER), OPEN_PROBE_MS, inner.url);
    try {
      return JSON.parse(raw.toString('utf8')) as Marker;
    } catch {
      throw new EncryptionError('DAMAGED', 'INVALID', `${ENCRYPTION_MARKER} in ${inner.url} is not valid JSON`, { url: inner.url });
    }
  } catch (err) {
    if (err instanceof BackendError && err.code === 'BACKEND' && err.context.unreachable === true) {
      const cause = (err as { cause?: unknown }).cause;
      return { unreachable: cause instanceof Error ? `${err.message}: ${cause.message}` : err.message };
    }
    throw err;
  }
}

/** The 32-byte key in `file`; EncryptionError BAD_KEY (code INVALID) when it is neither form. */
export async function readKeyFile(file: string): Promise<Buffer> {
  let raw: Buffer;
  try {
    raw = await readFile(file);
  } catch (err) {
    throw new EncryptionError('BAD_KEY', 'INVALID', `encryption key file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`, { file });
  }
  if (raw.length === 32) return raw;
  const text = raw.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  throw new EncryptionError('BAD_KEY', 'INVALID', `encryption key file ${file}: expected 32 raw bytes or 64 hex characters, got ${raw.length} bytes`, { file });
}

export interface OpenBackendOptions {
  encryptionKey?: Buffer;
  /** Keys of an unfinished (or beginning) key rotation: read with, never written with. */
  oldKeys?: Buffer[];
  localDir?: string;
  /**
   * Not a mount but a tool that only uses the backend (`vpoolfs scrub --backend`): it never writes the marker
   * (it must neither turn encryption on nor begin a rotation: the owner does that), and its errors name its
   * own flags. The text is the command, e.g. `vpoolfs scrub --backend`.
   */
  tool?: string;
}

export async function openBackend(url: string, opts: OpenBackendOptions = {}): Promise<BlobStore> {
  return openBackendOn(await openBlobStore(url), opts);
}

/** openBackend over a store already opened (a backend move's MirrorStore: volume/policy/mirror-store.ts). */
export async function openBackendOn(inner: BlobStore, opts: OpenBackendOptions = {}): Promise<BlobStore> {
  try {
    const { localDir } = opts;
    let marker: Marker | null;
    let offline = false;
    const read = await readBackendMarker(inner);
    if (read === null || !('unreachable' in read)) {
      const moved = await answerWithin(inner.head(MOVED_MARKER), OPEN_PROBE_MS, inner.url);
      if (moved !== null) {
        const to = JSON.parse((await inner.get(MOVED_MARKER)).toString('utf8')) as { to?: string };
        throw new BackendError('INVALID', `the vPool in ${inner.url} was moved to ${to.to}: mount that backend (--backend); this one is no longer written`, { url: inner.url, movedTo: to.to });
      }
      marker = read;
      if (localDir !== undefined) await writeLocalMarker(localDir, inner.url, marker);
    } else {
      const local = localDir === undefined ? undefined : await readLocalMarker(localDir);
      if (local === undefined) {
        throw new BackendError('BACKEND',
          `the backend ${inner.url} is unreachable (${read.unreachable}), and ${localDir === undefined ? 'no state directory was given' : `the state directory ${localDir} has never been mounted on it`}: ` +
          'cannot tell whether it is encrypted; mount again once the backend is reachable', { url: inner.url, localDir });
      }
      marker = local.marker;
      offline = true;
      log.warn(`backend unreachable at open: going on with the local copy of ${ENCRYPTION_MARKER}`, { url: inner.url, encrypted: marker !== null, cause: read.unreachable });
    }
    // what to do, in the words of the command that opens the backend
    const how = opts.tool === undefined ? 'mount' : `run ${opts.tool}`;
    if (opts.encryptionKey === undefined) {
      if (marker !== null) {
        throw new EncryptionError('MISSING_KEY', 'INVALID', `the backend ${inner.url} is encrypted (key id ${marker.keyId}): ${how} with --encryption-key-file`, { url: inner.url, objectKeyId: marker.keyId });
      }
      if ((opts.oldKeys ?? []).length > 0) throw new EncryptionError('BAD_KEY', 'INVALID', `old encryption keys given without --encryption-key-file: nothing to rotate to`, { url: inner.url });
      return inner;
    }
    const store = new EncryptedBlobStore(inner, opts.encryptionKey, undefined, opts.oldKeys ?? []);
    const keyId = store.keyId.toString('hex');
    const oldIds = new Set(store.oldKeyIds);
    if (opts.tool !== undefined) {
      // a tool reads and writes objects with the keys the marker names, and never changes the marker
      if (marker === null) throw new EncryptionError('BAD_KEY', 'INVALID', `the backend ${inner.url} is not encrypted: ${how} without --encryption-key-file`, { url: inner.url });
      if (marker.keyId !== keyId) {
        const rotatingFrom = (marker.oldKeyIds ?? []).includes(keyId);
        throw new EncryptionError('WRONG_KEY', 'INVALID', rotatingFrom
          ? `the backend ${inner.url} is being moved from key id ${keyId} to key id ${marker.keyId}: ${how} with the new key as --encryption-key-file and this one as --old-encryption-key-file`
          : oldIds.has(marker.keyId!)
            ? `the backend ${inner.url} is still under key id ${marker.keyId}: its key rotation has not begun (the owner begins it when mounted with the new key); ${how} with key id ${marker.keyId} as --encryption-key-file`
            : `the backend ${inner.url} is encrypted with key id ${marker.keyId}, but the key given has id ${keyId}: wrong encryption key`,
          { url: inner.url, objectKeyId: marker.keyId, keyId });
      }
      checkPending(inner.url, marker.oldKeyIds ?? [], oldIds, how);
      store.retiring = marker.oldKeyIds ?? [];
      return store;
    }
    if (marker === null) {
      if (offline) {
        throw new EncryptionError('MISSING_KEY', 'INVALID',
          `the backend ${inner.url} is unreachable and was not encrypted when this state directory last reached it: cannot turn encryption on now; mount again once the backend is reachable`, { url: inner.url });
      }
      if (oldIds.size > 0) {
        throw new EncryptionError('BAD_KEY', 'INVALID', `the backend ${inner.url} is not encrypted: there is no old key to rotate from (turning encryption on for a plain vPool is not supported)`, { url: inner.url });
      }
      marker = { format: FORMAT, keyId };
      await inner.put(ENCRYPTION_MARKER, Buffer.from(`${JSON.stringify(marker)}\n`));
      if (localDir !== undefined) await writeLocalMarker(localDir, inner.url, marker);
      return store;
    }
    const pending = marker.oldKeyIds ?? [];
    if (marker.keyId !== keyId) {
      if (pending.includes(keyId)) {
        throw new EncryptionError('WRONG_KEY', 'INVALID',
          `the backend ${inner.url} is being moved from key id ${keyId} to key id ${marker.keyId}: mount with the new key as --encryption-key-file and this one as --old-encryption-key-file`,
          { url: inner.url, objectKeyId: marker.keyId, keyId });
      }
      if (!oldIds.has(marker.keyId!)) {
        throw new EncryptionError('WRONG_KEY', 'INVALID', `the backend ${inner.url} is encrypted with key id ${marker.keyId}, but the key given has id ${keyId}${oldIds.size > 0 ? ` and the old keys ids ${[...oldIds].join(', ')}` : ''}: wrong encryption key`, { url: inner.url, objectKeyId: marker.keyId, keyId });
      }
      // a rotation begins: the marker names the new key before anything is written with it
      if (offline) {
        throw new EncryptionError('MISSING_KEY', 'INVALID', `the backend ${inner.url} is unreachable: a key rotation can only begin while it answers; mount again once it does (or with the current key alone)`, { url: inner.url });
      }
      const rotated: Marker = { format: marker.format ?? FORMAT, keyId, oldKeyIds: [...new Set([marker.keyId!, ...pending])] };
      checkPending(inner.url, rotated.oldKeyIds!, oldIds);
      await inner.put(ENCRYPTION_MARKER, Buffer.from(`${JSON.stringify(rotated)}\n`));
      if (localDir !== undefined) await writeLocalMarker(localDir, inner.url, rotated);
      log.warn('encryption key rotation begun: new objects use the new key; the rekey job rewrites the old ones (vpoolfs rekey)', { url: inner.url, keyId, oldKeyIds: rotated.oldKeyIds });
      marker = rotated;
    } else checkPending(inner.url, pending, oldIds);
    store.retiring = marker.oldKeyIds ?? [];
    return store;
  } catch (err) {
    // not awaited: close waits for the requests in flight, and a hung endpoint's never end
    void inner.close().catch(() => undefined);
    throw err;
  }
}

/** Every key id a rotation still retires must be among the old keys given: objects may still be under it. */
function checkPending(url: string, pending: string[], given: Set<string>, how = 'mount'): void {
  const missing = pending.filter((id) => !given.has(id));
  if (missing.length > 0) {
    throw new EncryptionError('MISSING_KEY', 'INVALID',
      `the backend ${url} is in the middle of a key rotation: objects may still be encrypted with key id ${missing.join(', ')}; ${how} with that key as --old-encryption-key-file too (vpoolfs rekey finishes the rotation)`,
      { url, missingKeyIds: missing });
  }
}

/**
 * The end of a rotation: the marker keeps only the current key (the rekey job calls this once every object
 * is under it; `gate` is the claim's gate: a router that lost the vPool must not write). From then on the
 * new key alone mounts. Idempotent.
 */
export async function finishRotation(store: EncryptedBlobStore, opts: { localDir?: string; gate?: () => Promise<void> } = {}): Promise<void> {
  const keyId = store.keyId.toString('hex');
  const read = await readBackendMarker(store.inner);
  if (read === null || 'unreachable' in read) throw new BackendError('BACKEND', `${ENCRYPTION_MARKER} of ${store.url} cannot be read: the rotation is not finished yet`, { url: store.url });
  if (read.keyId !== keyId) throw new EncryptionError('WRONG_KEY', 'INVALID', `${ENCRYPTION_MARKER} of ${store.url} names key id ${read.keyId}, not this store's ${keyId}: not finishing a rotation`, { url: store.url });
  const done: Marker = { format: read.format ?? FORMAT, keyId };
  if ((read.oldKeyIds ?? []).length > 0) {
    await opts.gate?.();
    await store.inner.put(ENCRYPTION_MARKER, Buffer.from(`${JSON.stringify(done)}\n`));
    log.info('encryption key rotation finished: every object is under the new key; the old keys are no longer needed', { url: store.url, keyId, retired: read.oldKeyIds });
  }
  store.retiring = [];
  if (opts.localDir !== undefined) await writeLocalMarker(opts.localDir, store.url, done);
}
