/**
 * The management API's HTTP server (served by the mount daemon): always on `<state>/api.sock`, a unix
 * socket of mode 0600 (root only: the file's permissions are the authentication), and, with `--api
 * HOST:PORT`, on TCP where every request must carry `Authorization: Bearer <token>` (the token from
 * `--api-token-file`; a non-loopback address without a token is refused at start). JSON in, JSON out;
 * every failure is an ApiError (errors.ts) and is logged with its sentence (dispatch.ts: the route table, and the
 * forwarding of a delegated vDisk's routes to the router serving it).
 */
import { timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { logger } from '../util/log.js';
import type { ApiContext } from './context.js';
import { dispatch } from './dispatch.js';
import { ApiError } from './errors.js';

const log = logger('api');

/** Largest request body taken (every body is a few fields). */
const MAX_BODY = 1 << 20;

export interface ApiListen {
  /** The unix socket path (`<state>/api.sock`). */
  socket: string;
  /** HOST:PORT for TCP, with `token`. */
  tcp?: { host: string; port: number; token: string | null };
}

export interface ApiServer {
  readonly socket: string;
  /** HOST:PORT actually bound on TCP, or null. */
  readonly tcp: string | null;
  close(): Promise<void>;
}

/** The longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH = 107;

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new ApiError('BAD_REQUEST', `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (n === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
      } catch (err) {
        reject(new ApiError('BAD_REQUEST', `the request body is not JSON: ${(err as Error).message}`));
      }
    });
  });
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function tokenOk(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function handler(ctx: ApiContext, token: string | null) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://vpoolfs');
    const method = req.method ?? 'GET';
    const authorized = () => {
      if (token !== null && !tokenOk(req.headers.authorization, token)) {
        throw new ApiError('UNAUTHORIZED', `${method} ${url.pathname}: a valid "Authorization: Bearer <token>" header is needed on TCP (the token of --api-token-file)`);
      }
    };
    void dispatch(ctx, method, url, () => readBody(req), authorized).then((reply) => send(res, reply.status, reply.body));
  };
}

function listen(server: http.Server, where: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (typeof where === 'string') server.listen(where, done);
    else server.listen(where.port, where.host, done);
  });
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Checks the TCP options before anything starts: a non-loopback address needs a token. */
export function checkApiTcp(host: string, token: string | null, flag: string): void {
  if (token === null && !LOOPBACK.test(host)) {
    throw new ApiError('INVALID', `${flag} ${host}: the management API listens on an address other than loopback only with a token (--api-token-file): anyone who reaches it could delete vDisks`);
  }
}

export async function serveApi(ctx: ApiContext, where: ApiListen): Promise<ApiServer> {
  if (Buffer.byteLength(where.socket) > MAX_SOCKET_PATH) {
    throw new ApiError('INVALID', `the API socket path ${where.socket} is ${Buffer.byteLength(where.socket)} bytes, over the ${MAX_SOCKET_PATH} a unix socket takes: use a shorter --state`);
  }
  // the state lock is ours: a socket file left there is a dead daemon's
  fs.rmSync(where.socket, { force: true });
  const unixServer = http.createServer(handler(ctx, null));
  // not process.umask() around the bind: it is process-wide, and the vPool's files are being created meanwhile.
  // Connecting needs write permission on the socket, which a usual umask (022) already denies to others; the
  // chmod right after the bind makes it 0600 whatever the umask.
  await listen(unixServer, where.socket);
  fs.chmodSync(where.socket, 0o600);
  let tcpServer: http.Server | undefined;
  let tcp: string | null = null;
  if (where.tcp) {
    checkApiTcp(where.tcp.host, where.tcp.token, '--api');
    tcpServer = http.createServer(handler(ctx, where.tcp.token));
    try {
      await listen(tcpServer, where.tcp);
    } catch (err) {
      unixServer.close();
      throw new ApiError('INVALID', `--api ${where.tcp.host}:${where.tcp.port}: cannot listen (${(err as Error).message})`);
    }
    const a = tcpServer.address() as AddressInfo;
    tcp = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }
  log.info('management API listening', { socket: where.socket, tcp, token: where.tcp?.token ? 'required' : null });
  const close = (s: http.Server) =>
    new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  return {
    socket: where.socket,
    tcp,
    async close() {
      await Promise.all([close(unixServer), tcpServer ? close(tcpServer) : undefined]);
      fs.rmSync(where.socket, { force: true });
    },
  };
}
