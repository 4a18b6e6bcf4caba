/**
 * openBlobStore(url): opens the BlobStore for a backend URL, chosen by its scheme through the `backends`
 * registry below (`file:` → FileBlobStore, `mem:` → MemBlobStore, `s3:` → S3BlobStore). To add a backend,
 * write its BlobStore in this folder and add one entry to `backends`. Also re-exports the shared key validation.
 */
import { BackendError } from '../../util/errors.js';
import type { BlobStore } from './types.js';
import { FileBlobStore } from './file-store.js';
import { MemBlobStore } from './mem-store.js';
import { S3BlobStore } from './s3-store.js';

export type { BlobStore } from './types.js';
export { validateKey, validatePrefix } from './keys.js';
export { FileBlobStore } from './file-store.js';
export { MemBlobStore, resetMemStores } from './mem-store.js';
export { S3BlobStore } from './s3-store.js';

/** How to open a store for one URL scheme (the key, with its trailing `:`, as in URL.protocol). */
type Opener = (url: string) => Promise<BlobStore>;

const backends: Readonly<Record<string, Opener>> = {
  'file:': (url) => FileBlobStore.open(url),
  'mem:': async (url) => new MemBlobStore(url),
  's3:': (url) => S3BlobStore.open(url),
};

/** The schemes openBlobStore accepts, e.g. ['file:', 'mem:']. */
export function supportedSchemes(): string[] {
  return Object.keys(backends);
}

/**
 * Opens the store for `url`. An unknown or missing scheme is BackendError INVALID (the message lists the
 * supported schemes and never repeats the URL, which could carry credentials).
 */
export async function openBlobStore(url: string): Promise<BlobStore> {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(typeof url === 'string' ? url : '');
  const scheme = match === null ? undefined : `${match[1]!.toLowerCase()}:`;
  const open = scheme === undefined ? undefined : Object.hasOwn(backends, scheme) ? backends[scheme] : undefined;
  if (open === undefined) {
    const what = scheme === undefined ? 'a backend URL without a scheme' : `unsupported backend scheme '${scheme}'`;
    throw new BackendError('INVALID', `${what}; supported: ${supportedSchemes().join(', ')}`, { scheme, supported: supportedSchemes() });
  }
  return open(url);
}
