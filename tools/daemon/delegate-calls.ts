/**
 * The management API and the snapshot schedule on a vDisk delegated to another router (docs/cluster.md, "Ownership
 * per vDisk"): the vPool's owner runs both, the router serving the vDisk answers. Two control calls on the
 * delegate's router link (router-link/wire.ts CONTROL_SIGNATURES):
 *
 *   vdiskApi(method, url, body)      a request of an API route marked `forward` (api/context.ts) on a delegated
 *                                    vDisk: the delegate runs the API's own route table (api/dispatch.ts) over its
 *                                    facade (volume/vpool-delegates.ts) and answers [status, JSON body]: the same
 *                                    checks, answers and error sentences as on the owner (a clone or a template:
 *                                    BUSY, "move it back … first").
 *   vdiskSnapshots(path, what, args) the owner's automatic snapshots and retention (volume/snapshots/snapshot-
 *                                    schedule.ts DelegatedSnapshots): `auto` {name, timestamp} (none of a template),
 *                                    `list` (the template flag and the snapshots), `remove` {name}; answers
 *                                    JSON {ok, result} or {ok: false, error}.
 *
 * The owner's side (DelegateForwarder) asks the delegate of the path now (VDiskMover.callDelegate), each call
 * bounded by the link's wait (--peer-wait): an unreachable or silent delegate is an error naming it (API: 503).
 */
import type { ApiContext, ApiReply } from '../../api/context.js';
import { dispatchForwarded } from '../../api/dispatch.js';
import { ApiError } from '../../api/errors.js';
import { shown } from '../../api/paths.js';
import type { FdTable } from '../../fuse/fds.js';
import type { BlobStore } from '../../volume/backend/types.js';
import type { DelegatedSnapshots } from '../../volume/snapshots/snapshot-schedule.js';
import type { SnapshotInfo, VPool } from '../../volume/types.js';
import { logger } from '../../util/log.js';
import { VERSION } from '../version.js';

const log = logger('api');

type Cb = (code: number, ...values: unknown[]) => void;

export interface DelegateCallsOptions {
  facade: VPool;
  fds: FdTable;
  mountpoint: string;
  stateDir: string;
  /** The delegate's backend (open once it serves a vDisk). */
  backend: () => Promise<BlobStore>;
}

/** The delegate's handlers of `vdiskApi` and `vdiskSnapshots`. */
export function delegateCalls(o: DelegateCallsOptions): { vdiskApi: (...a: unknown[]) => void; vdiskSnapshots: (...a: unknown[]) => void } {
  const startedAt = Date.now();
  let ctx: Promise<ApiContext> | null = null;
  const context = () => (ctx ??= o.backend().then((backend) => ({
    vpool: o.facade, backend, mountpoint: o.mountpoint, stateDir: o.stateDir, engine: 'delegate', version: VERSION, startedAt,
    fds: () => o.fds,
    // this router's own mount follows the vPool's owner: its kernel sees the change within its attribute timeout,
    // as every follower's does; the owner tells its own (api/dispatch.ts)
    changed: () => Promise.resolve(),
    listening: () => ({ socket: null, tcp: null }),
  })));
  const vdiskApi = (method: string, url: string, body: Buffer, cb: Cb): void => {
    void (async (): Promise<ApiReply> => {
      const u = new URL(url, 'http://vpoolfs');
      let b: unknown;
      try {
        b = body.length === 0 ? undefined : (JSON.parse(body.toString('utf8')) as unknown);
      } catch (err) {
        const e = new ApiError('BAD_REQUEST', `${method} ${u.pathname}: the forwarded body is not JSON: ${(err as Error).message}`);
        return { status: e.status, body: { error: e.body } };
      }
      return dispatchForwarded(await context(), method, u, b);
    })().then(
      (r) => cb(0, r.status, r.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(r.body))),
      (err: unknown) => cb(0, 500, Buffer.from(JSON.stringify({ error: new ApiError('INTERNAL', `${method} ${url}: ${(err as Error).message}`).body }))),
    );
  };
  const snaps = o.facade.snapshots;
  const vdiskSnapshots = (p: string, what: string, args: Buffer, cb: Cb): void => {
    void (async () => {
      const a = JSON.parse(args.toString('utf8')) as { name?: string; timestamp?: number };
      switch (what) {
        case 'auto':
          if (o.facade.vdisk(p).info().template) return { taken: false };
          await snaps.create(p, String(a.name), { automatic: true, timestamp: Number(a.timestamp) });
          return { taken: true };
        case 'list':
          return { template: o.facade.vdisk(p).info().template, snapshots: snaps.list(p) };
        case 'remove':
          await snaps.remove(p, String(a.name));
          return {};
        default:
          throw new Error(`unknown snapshot call ${JSON.stringify(what)}`);
      }
    })().then(
      (result) => cb(0, Buffer.from(JSON.stringify({ ok: true, result }))),
      (err: unknown) => cb(0, Buffer.from(JSON.stringify({ ok: false, error: (err as Error).message }))),
    );
  };
  return { vdiskApi: vdiskApi as (...a: unknown[]) => void, vdiskSnapshots: vdiskSnapshots as (...a: unknown[]) => void };
}

/** What the owner's side needs of its VDiskMover (tools/daemon/vdisk-move.ts). */
export interface DelegateCaller {
  readonly delegated: ReadonlyMap<string, string>;
  callDelegate(p: string, op: string, args: unknown[]): Promise<{ router: string; code: number; values: unknown[] } | undefined>;
}

/** The vPool owner's side: the API's forwarding (ApiContext.forward) and the schedule's DelegatedSnapshots. */
export class DelegateForwarder implements DelegatedSnapshots {
  constructor(private readonly mover: () => DelegateCaller | undefined, private readonly waitMs: number) {}

  routerOf(p: string): string | undefined {
    return this.mover()?.delegated.get(p);
  }

  /** `op` on the delegate of `p`, bounded by waitMs; undefined when `p` is served here. Throws CLOSED naming the router. */
  private async call(p: string, op: string, args: unknown[], what: string): Promise<unknown[] | undefined> {
    const m = this.mover();
    const router = m?.delegated.get(p);
    if (m === undefined || router === undefined) return undefined;
    const down = (why: string) => new ApiError('CLOSED', `${what}: ${shown(p)} is served by router '${router}' (delegated by the vPool's owner), which ${why}`, shown(p));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(down(`did not answer within ${this.waitMs / 1000} s (it may still finish there: see its log)`)), this.waitMs);
    });
    try {
      const r = await Promise.race([m.callDelegate(p, op, args), late]).catch((err: unknown) => {
        throw err instanceof ApiError ? err : down(`cannot be reached now (${(err as Error).message})`);
      });
      if (r === undefined) return undefined; // moved back meanwhile: served here
      if (r.code < 0) throw down(`refused the call (errno ${-r.code}: an older version? see its log)`);
      return r.values;
    } finally {
      clearTimeout(timer);
    }
  }

  /** ApiContext.forward. */
  async api(p: string, method: string, url: string, body: unknown): Promise<ApiReply | undefined> {
    const router = this.routerOf(p);
    const values = await this.call(p, 'vdiskApi', [method, url, Buffer.from(body === undefined ? '' : JSON.stringify(body))], `${method} ${url}`);
    if (values === undefined) return undefined;
    const [status, text] = values;
    if (typeof status !== 'number' || !Buffer.isBuffer(text)) throw new ApiError('INTERNAL', `${method} ${url}: a malformed answer from the router serving ${shown(p)}`, shown(p));
    // (its refusals are logged there, with their sentence; a change made there is said here too)
    if (method !== 'GET') log.info(`API ${method} ${url}: answered by router '${router}', which serves ${shown(p)}`, { path: p, router, status });
    return { status, body: text.length === 0 ? undefined : (JSON.parse(text.toString('utf8')) as unknown) };
  }

  private async snapshots<T>(p: string, what: string, args: object): Promise<T> {
    const values = await this.call(p, 'vdiskSnapshots', [p, what, Buffer.from(JSON.stringify(args))], `snapshot ${what} of ${shown(p)}`);
    if (values === undefined) throw new ApiError('BUSY', `snapshot ${what} of ${shown(p)}: it is served here again (moved back meanwhile): the next run takes it`, shown(p));
    const r = JSON.parse((values[0] as Buffer).toString('utf8')) as { ok: boolean; result?: T; error?: string };
    if (!r.ok) throw new Error(`router '${this.routerOf(p) ?? '?'}': ${r.error}`);
    return r.result as T;
  }

  async takeAutomatic(p: string, name: string, timestamp: number): Promise<boolean> {
    return (await this.snapshots<{ taken: boolean }>(p, 'auto', { name, timestamp })).taken;
  }

  list(p: string): Promise<{ template: boolean; snapshots: SnapshotInfo[] }> {
    return this.snapshots(p, 'list', {});
  }

  async remove(p: string, name: string): Promise<void> {
    await this.snapshots(p, 'remove', { name });
  }
}
