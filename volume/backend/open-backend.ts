/**
 * openBackend(url, {encryptionKey}): the backend of a vPool as the daemon opens it — openBlobStore(url),
 * wrapped in EncryptedBlobStore when a key is given — with a plain marker object, `encryption.json`
 * ({format, keyId}), that makes key mistakes clear at mount time instead of at the first read:
 * - a key is given and the marker names another key id: EncryptionError WRONG_KEY (code INVALID);
 * - no key is given but the marker exists: EncryptionError MISSING_KEY (code INVALID);
 * - a key is given and there is no marker: the marker is written (first mount of an encrypted vPool).
 * readKeyFile() reads a key file: exactly 32 raw bytes, or 64 hex characters (surrounding whitespace ignored).
 */
import { readFile } from 'node:fs/promises';
import { BackendError } from '../../util/errors.js';
import { EncryptedBlobStore, EncryptionError } from './encrypted-store.js';
import { openBlobStore } from './index.js';
import type { BlobStore } from './types.js';

export const ENCRYPTION_MARKER = 'encryption.json';
const FORMAT = 'vpoolfs-aes-256-gcm-chunked-1';

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

export async function openBackend(url: string, opts: { encryptionKey?: Buffer } = {}): Promise<BlobStore> {
  const inner = await openBlobStore(url);
  try {
    let marker: { format?: string; keyId?: string } | null = null;
    if ((await inner.head(ENCRYPTION_MARKER)) !== null) {
      try {
        marker = JSON.parse((await inner.get(ENCRYPTION_MARKER)).toString('utf8')) as { format?: string; keyId?: string };
      } catch (err) {
        if (err instanceof BackendError) throw err;
        throw new EncryptionError('DAMAGED', 'INVALID', `${ENCRYPTION_MARKER} in ${inner.url} is not valid JSON`, { url: inner.url });
      }
    }
    if (opts.encryptionKey === undefined) {
      if (marker !== null) {
        throw new EncryptionError('MISSING_KEY', 'INVALID', `the backend ${inner.url} is encrypted (key id ${marker.keyId}): mount with --encryption-key-file`, { url: inner.url, objectKeyId: marker.keyId });
      }
      return inner;
    }
    const store = new EncryptedBlobStore(inner, opts.encryptionKey);
    const keyId = store.keyId.toString('hex');
    if (marker === null) {
      await inner.put(ENCRYPTION_MARKER, Buffer.from(`${JSON.stringify({ format: FORMAT, keyId })}\n`));
    } else if (marker.keyId !== keyId) {
      throw new EncryptionError('WRONG_KEY', 'INVALID', `the backend ${inner.url} is encrypted with key id ${marker.keyId}, but the key given has id ${keyId}: wrong encryption key`, { url: inner.url, objectKeyId: marker.keyId, keyId });
    }
    return store;
  } catch (err) {
    await inner.close();
    throw err;
  }
}
