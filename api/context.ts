/**
 * What the management API's handlers work with: the vPool, the mount (open handles, telling the kernel about
 * changes made behind its back), the backend (reachability), and the daemon's identity for the status view.
 * tools/commands/mount-cmd.ts builds it; the handlers never see the HTTP layer (server.ts) beyond ApiRequest.
 */
import type { Change } from '../fuse/mount-types.js';
import type { FdTable } from '../fuse/fds.js';
import type { BlobStore } from '../volume/backend/types.js';
import type { VPool } from '../volume/types.js';
import type { RekeyJob } from '../volume/policy/rekey-job.js';
import type { MoveJob } from '../volume/policy/move-job.js';
import type { RouterRow } from '../registry/router-list.js';

export interface ApiContext {
  vpool: VPool;
  backend: BlobStore;
  mountpoint: string;
  stateDir: string;
  engine: string;
  version: string;
  startedAt: number;
  /** The mount's open-file table (undefined before the mount is up). */
  fds(): FdTable | undefined;
  /** Tells the kernel that a path changed without a request of the mount (fuse/mount-types.ts). */
  changed(path: string, how: Change): Promise<void>;
  /** The rekey job of an encrypted backend (key rotation, volume/policy/rekey-job.ts); undefined for a plain one. */
  rekey?: RekeyJob;
  /** The move job of a backend move in progress (volume/policy/move-job.ts); undefined otherwise. */
  move?: MoveJob;
  /** With --registry: the registry's URL and its routers as this router's session reads them (GET /v1/routers). */
  registry?: { url: string; routers(): Promise<RouterRow[]> };
  /** Where the API listens, for the status view. */
  listening(): { socket: string | null; tcp: string | null };
  /**
   * With ownership per vDisk (docs/cluster.md): runs a request of a route marked `forward` on the router the vDisk
   * at `path` is delegated to, and gives its answer (status and body as that router's API gave them); undefined
   * when the vDisk is served here (api/dispatch.ts then runs the route here).
   */
  forward?(path: string, method: string, url: string, body: unknown): Promise<ApiReply | undefined>;
}

/** A request as the route handlers see it: path parameters decoded, the query, the JSON body (or undefined). */
export interface ApiRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export interface ApiReply {
  status: number;
  body?: unknown;
}

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface Route {
  method: Method;
  /** `/v1/vdisks/{path}/snapshots/{name}`: a `{param}` is one URL segment, percent-decoded (a vPool path has its slashes as %2F). */
  pattern: string;
  /** One line, for the route list and the error of an unknown route. */
  summary: string;
  handle(ctx: ApiContext, req: ApiRequest): Promise<ApiReply>;
  /**
   * A route on one vDisk (`{path}`) that the router serving it answers when it is delegated to another router
   * (ApiContext.forward): `changed`, what a success changes behind this router's kernel (told as the route does
   * here); `view`, the answer is a vDisk view whose tree attributes (mode, owner, mtime) are this router's.
   */
  forward?: { changed?: Change; view?: boolean };
}
