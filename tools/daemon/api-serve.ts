/**
 * The mount daemon's side of the management API: resolves `--api` / `--api-token-file`, builds the
 * ApiContext over the vPool and the mount, starts api/server.ts, and says what `user.vpool.api` answers
 * (how the CLI finds the socket from a path: tools/client/locate.ts).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ApiContext } from '../../api/context.js';
import { checkApiTcp, MAX_SOCKET_PATH, serveApi, type ApiServer } from '../../api/server.js';
import type { Mounted } from '../../fuse/mount.js';
import type { BlobStore } from '../../volume/backend/types.js';
import type { VPool } from '../../volume/types.js';
import type { RekeyJob } from '../../volume/policy/rekey-job.js';
import type { MoveJob } from '../../volume/policy/move-job.js';
import { ConfigError, parseHostPort, type ResolvedMount } from './config.js';
import { VERSION } from '../version.js';

export const API_SOCKET_NAME = 'api.sock';

export interface ApiPlan {
  socket: string;
  tcp?: { host: string; port: number; token: string | null };
  /** With --registry, set once the router's registry session is up: what GET /v1/routers answers from. */
  registry?: ApiContext['registry'];
}

/** Checks the API options before anything is opened: a socket path a unix socket can take, a token where one is needed. */
export async function planApi(cfg: ResolvedMount): Promise<ApiPlan> {
  const socket = path.join(cfg.state, API_SOCKET_NAME);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new ConfigError(`--state ${cfg.state}: the API socket ${socket} would be ${Buffer.byteLength(socket)} bytes, over the ${MAX_SOCKET_PATH} a unix socket path takes; use a shorter state directory`);
  }
  if (cfg.api === undefined) {
    if (cfg.apiTokenFile !== undefined) throw new ConfigError('--api-token-file: only with --api HOST:PORT (the unix socket needs no token)');
    return { socket };
  }
  const { host, port } = parseHostPort(cfg.api, '--api');
  let token: string | null = null;
  if (cfg.apiTokenFile !== undefined) {
    try {
      token = (await readFile(cfg.apiTokenFile, 'utf8')).split('\n')[0].trim();
    } catch (err) {
      throw new ConfigError(`--api-token-file ${cfg.apiTokenFile}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
    }
    if (token.length < 16) throw new ConfigError(`--api-token-file ${cfg.apiTokenFile}: the token (its first line) must be at least 16 characters, got ${token.length}`);
  }
  try {
    checkApiTcp(host, token, '--api');
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return { socket, tcp: { host, port, token } };
}

export interface DaemonApi {
  server: ApiServer;
  /** What getxattr user.vpool.api answers. */
  info(): Record<string, unknown>;
}

/** Starts the API before the mount exists (so that once the mount answers, the API does): `mounted()` is undefined until then. */
export async function startApi(plan: ApiPlan, cfg: ResolvedMount, vpool: VPool, backend: BlobStore, engine: string, mounted: () => Mounted | undefined, rekey?: RekeyJob, move?: MoveJob, forward?: ApiContext['forward']): Promise<DaemonApi> {
  const startedAt = Date.now();
  let server: ApiServer | undefined;
  const ctx: ApiContext = {
    vpool,
    backend,
    mountpoint: cfg.mountpoint,
    stateDir: cfg.state,
    engine,
    version: VERSION,
    startedAt,
    fds: () => mounted()?.fds,
    changed: async (p, how) => mounted()?.changed(p, how),
    listening: () => ({ socket: server?.socket ?? null, tcp: server?.tcp ?? null }),
    rekey,
    move,
    registry: plan.registry,
    forward,
  };
  server = await serveApi(ctx, plan);
  const s = server;
  return {
    server: s,
    info: () => ({ socket: s.socket, tcp: s.tcp, pid: process.pid, vpool: vpool.name, mountpoint: cfg.mountpoint, version: VERSION }),
  };
}
