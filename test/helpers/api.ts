/**
 * The management API for tests: a mount's socket (`<state>/api.sock`), a caller that returns status and
 * body without throwing, and the check every refusal must pass (JSON error with a stable code, the errno,
 * a sentence that names the object).
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { rawRequest, pathParam, type ApiTarget } from '../../api/client.js';

export { pathParam };

export function apiOf(state: string): { socket: string } {
  return { socket: path.join(state, 'api.sock') };
}

export interface Answer {
  status: number;
  body: any;
}

export async function api(target: ApiTarget, method: string, url: string, body?: unknown): Promise<Answer> {
  const r = await rawRequest(target, method, url, body);
  return { status: r.status, body: r.body };
}

/** Asserts a refusal: HTTP status, stable code, errno, and a message naming `names` (each a string that must appear). */
export function refused(t: ExecutionContext, a: Answer, status: number, code: string, errno: string, names: Array<string | RegExp>): void {
  t.is(a.status, status, JSON.stringify(a.body));
  const e = a.body?.error;
  t.truthy(e, `an error body: ${JSON.stringify(a.body)}`);
  t.is(e.code, code, e.message);
  t.is(e.errno, errno, e.message);
  t.is(typeof e.message, 'string');
  for (const n of names) {
    if (typeof n === 'string') t.true(e.message.includes(n), `"${e.message}" names ${n}`);
    else t.regex(e.message, n);
  }
}

/**
 * What the mount shows after an API change: at once with the kernel engine (the daemon tells the kernel);
 * fuse-native has no notify call and keeps attributes up to its 1 s timeout, so there it is polled (5 s at most).
 */
export async function mountShows(t: ExecutionContext, read: () => Promise<string>, expected: string, what: string): Promise<void> {
  if (process.env.VPOOLFS_TEST_FUSE_ENGINE === 'fuse-native') {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (await read()) !== expected) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(await read(), expected, what);
}
