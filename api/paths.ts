/**
 * vPool paths in the API. In answers a path is relative to the vPool root without a leading slash
 * (`vms/web/root.img`, as `user.vdisk.info` shows parents and clones); in requests it may have one. Inside
 * the daemon a path is absolute (`/vms/web/root.img`), as the volume layer wants it.
 */
import { ApiError } from './errors.js';

/** A request's path (`vms/a`, `/vms/a`, `` or `/` for the root) → the absolute vPool path; BAD_REQUEST for `.`, `..`, NUL. */
export function vpoolPath(raw: unknown, what: string): string {
  if (typeof raw !== 'string') throw new ApiError('BAD_REQUEST', `${what}: a path (a string, relative to the vPool root) is needed, got ${JSON.stringify(raw)}`);
  const parts = raw.split('/').filter((x) => x.length > 0);
  if (parts.some((x) => x === '.' || x === '..' || x.includes('\0'))) {
    throw new ApiError('BAD_REQUEST', `${what}: bad path ${JSON.stringify(raw)}: give it relative to the vPool root, without . or ..`, raw);
  }
  return '/' + parts.join('/');
}

/** The absolute vPool path as answers show it (`/vms/a` → `vms/a`, `/` → ``). */
export function shown(p: string): string {
  return p.replace(/^\/+/, '');
}
