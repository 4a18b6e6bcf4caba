/**
 * Key, prefix and range validation shared by every BlobStore implementation, so that all backends accept
 * and reject exactly the same arguments (the rules in ./types.ts).
 *
 * A key is 1..1024 bytes of [A-Za-z0-9._/-], `/`-separated, with no leading `/`. Besides the rules in
 * types.ts, every segment must be non-empty and neither `.` nor `..` (so no `a//b`, no trailing `/`,
 * no `./a`): on a file backend those would alias other keys or escape the root directory.
 * Because `~` and other characters outside that set never occur in a key, backends may use them for
 * private names (the file backend's temp files) without colliding with any key.
 */
import { BackendError } from '../../util/errors.js';

export const MAX_KEY_BYTES = 1024;

const KEY_CHARS = /^[A-Za-z0-9._/-]*$/;

function invalid(what: 'key' | 'prefix', value: unknown, reason: string): BackendError {
  const shown = typeof value === 'string' && value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return new BackendError('INVALID', `invalid ${what} ${JSON.stringify(shown)}: ${reason}`, { [what]: value });
}

/** Throws BackendError INVALID unless `key` is a valid object key. */
export function validateKey(key: string): void {
  if (typeof key !== 'string') throw invalid('key', key, 'not a string');
  if (key.length === 0) throw invalid('key', key, 'empty');
  if (!KEY_CHARS.test(key)) throw invalid('key', key, 'only A-Z a-z 0-9 . _ / - are allowed');
  if (key.length > MAX_KEY_BYTES) throw invalid('key', key, `longer than ${MAX_KEY_BYTES} bytes`);
  if (key.startsWith('/')) throw invalid('key', key, 'must not start with /');
  for (const segment of key.split('/')) {
    if (segment === '') throw invalid('key', key, 'empty path segment');
    if (segment === '.' || segment === '..') throw invalid('key', key, `'${segment}' segment`);
  }
}

/**
 * Throws BackendError INVALID unless `prefix` could start a valid key: the key alphabet, at most 1024
 * bytes, no leading `/`, and no empty, `.` or `..` segment before its last `/`. The empty prefix is valid.
 */
export function validatePrefix(prefix: string): void {
  if (typeof prefix !== 'string') throw invalid('prefix', prefix, 'not a string');
  if (!KEY_CHARS.test(prefix)) throw invalid('prefix', prefix, 'only A-Z a-z 0-9 . _ / - are allowed');
  if (prefix.length > MAX_KEY_BYTES) throw invalid('prefix', prefix, `longer than ${MAX_KEY_BYTES} bytes`);
  if (prefix.startsWith('/')) throw invalid('prefix', prefix, 'must not start with /');
  const segments = prefix.split('/');
  for (const segment of segments.slice(0, -1)) {
    if (segment === '') throw invalid('prefix', prefix, 'empty path segment');
    if (segment === '.' || segment === '..') throw invalid('prefix', prefix, `'${segment}' segment`);
  }
}

/** Byte-order comparison of two keys (keys are ASCII, so UTF-16 code unit order is byte order). */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Throws BackendError INVALID unless `offset` and `length` are non-negative safe integers. */
export function validateRangeArgs(key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new BackendError('INVALID', `invalid range offset=${offset} length=${length} for ${key}`, { key, offset, length });
  }
}

/** Throws BackendError INVALID when [offset, offset+length) does not lie within an object of `size` bytes. */
export function checkRangeWithin(key: string, offset: number, length: number, size: number): void {
  if (offset + length > size) {
    throw new BackendError('INVALID', `range offset=${offset} length=${length} goes past the end of ${key} (${size} bytes)`, {
      key,
      offset,
      length,
      size,
    });
  }
}
