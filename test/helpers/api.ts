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
