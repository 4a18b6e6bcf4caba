/**
 * A client of the management API (the CLI's, and the tests'): HTTP over the unix socket, or over TCP with a
 * token. A refusal throws ApiClientError carrying the server's error body (code, errno, sentence); a daemon
 * that does not answer throws ApiClientError with code UNREACHABLE and the socket's error.
 */
import http from 'node:http';
import type { ErrorBody } from './errors.js';

export type ApiTarget = { socket: string } | { host: string; port: number; token: string | null };

export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }
}

/** Percent-encodes a vPool path as the one `{path}` segment of a route. */
export function pathParam(p: string): string {
  return encodeURIComponent(p.replace(/^\/+/, ''));
}

export interface ApiResponse {
  status: number;
  body: unknown;
  contentType: string | undefined;
}

/** One request; resolves with whatever status came back (no throwing on 4xx: see `call`). */
export function rawRequest(target: ApiTarget, method: string, urlPath: string, body?: unknown, timeoutMs = 600_000): Promise<ApiResponse> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = {};
  if (data) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = data.length;
  }
  const where = 'socket' in target ? { socketPath: target.socket } : { host: target.host, port: target.port };
  if ('token' in target && target.token) headers.authorization = `Bearer ${target.token}`;
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, path: urlPath, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = undefined;
        if (text.length > 0) {
          try {
            parsed = JSON.parse(text) as unknown;
          } catch {
            parsed = text;
          }
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, contentType: res.headers['content-type'] });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const at = 'socket' in target ? target.socket : `${target.host}:${target.port}`;
      reject(new ApiClientError(0, { code: 'UNREACHABLE', errno: err.code ?? 'EIO', message: `the vpoolfs daemon's API at ${at} does not answer (${err.code ?? err.message}): is the daemon running?`, object: null }));
    });
    req.end(data);
  });
}

/** A request whose success is a 2xx: resolves with the body; a refusal throws ApiClientError with the server's sentence. */
export async function call<T = unknown>(target: ApiTarget, method: string, urlPath: string, body?: unknown): Promise<T> {
  const r = await rawRequest(target, method, urlPath, body);
  if (r.status >= 200 && r.status < 300) return r.body as T;
  const err = (r.body as { error?: ErrorBody } | undefined)?.error;
  throw new ApiClientError(r.status, err ?? { code: 'INTERNAL', errno: 'EIO', message: `${method} ${urlPath}: HTTP ${r.status}`, object: null });
}
