/**
 * `GET /v1/status`: the vPool as an admin wants to see it at a glance — the daemon (pid, version, router,
 * engine, uptime), the backend (reachable now? how long a probe took, the cause when not), the write and
 * read caches, the upload backlog, the DTL states of the vDisks, and the pool's provisioned / written bytes.
 */
import { poolUsage, walkTree } from '../fuse/pool-usage.js';
import type { DtlState } from '../volume/types.js';
import type { ApiContext, Route } from './context.js';
import { attempt } from './routes-vdisks.js';

/** How long the backend probe may take before the backend counts as unreachable. */
export const BACKEND_PROBE_MS = 5000;
const PROBE_KEY = 'vpoolfs-api-probe';

async function probeBackend(ctx: ApiContext): Promise<{ url: string; reachable: boolean; probeMs: number; error: string | null }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${BACKEND_PROBE_MS} ms`), BACKEND_PROBE_MS);
  });
  const probe = ctx.backend.head(PROBE_KEY).then(
    () => null,
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );
  const error = await Promise.race([probe, timeout]);
  clearTimeout(timer);
  return { url: ctx.backend.url, reachable: error === null, probeMs: Date.now() - start, error };
}

async function status(ctx: ApiContext) {
  const { vpool } = ctx;
  const usage = poolUsage(vpool);
  const caches = vpool.cacheStats();
  const backlog = { scos: 0, tlogs: 0, dirtyBytes: 0, lagSeconds: 0, dtlQueuedBytes: 0 };
  const dtlStates: Record<DtlState, number> = { ok_sync: 0, ok_standalone: 0, catchup: 0, degraded: 0 };
  const dtlModes: Record<string, number> = { none: 0, async: 0, sync: 0 };
  const faults: Array<{ path: string; code: string; message: string }> = [];
  const fds = ctx.fds();
  for (const { path, stat } of walkTree(vpool)) {
    if (stat.kind !== 'file') continue;
    const i = vpool.vdisk(path).info();
    backlog.scos += i.uploadBacklog.scos;
    backlog.tlogs += i.uploadBacklog.tlogs;
    backlog.dirtyBytes += i.dirtyBytes;
    backlog.lagSeconds = Math.max(backlog.lagSeconds, Math.round(i.uploadLagMs / 1000));
    backlog.dtlQueuedBytes += i.dtlQueuedBytes;
    dtlModes[i.dtl.mode] = (dtlModes[i.dtl.mode] ?? 0) + 1;
    if (i.dtl.mode !== 'none') dtlStates[i.dtl.state]++;
    if (i.fault) faults.push({ path: path.slice(1), code: i.fault.code, message: i.fault.message });
  }
  return {
    vpool: vpool.name,
    router: vpool.routerId,
    pid: process.pid,
    version: ctx.version,
    mountpoint: ctx.mountpoint,
    stateDir: ctx.stateDir,
    engine: ctx.engine,
    startedAt: ctx.startedAt,
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
    api: ctx.listening(),
    backend: await probeBackend(ctx),
    usage,
    writeCache: { bytes: caches.writeCacheBytes, limitBytes: caches.writeCacheLimit, waitingWrites: caches.writeCacheWaiters, stateDiskFull: caches.stateDiskFull },
    readCache: { bytes: caches.readCacheBytes, limitBytes: caches.readCacheLimit, hits: caches.readCacheHits, misses: caches.readCacheMisses },
    uploadBacklog: backlog,
    dtl: { modes: dtlModes, states: dtlStates },
    openHandles: fds?.size ?? 0,
    faults,
  };
}

export const statusRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/status',
    summary: 'the vPool: daemon, backend reachability, caches, upload backlog, DTL, usage',
    async handle(ctx) {
      return { status: 200, body: await attempt('status of the vPool', ctx.vpool.name, () => status(ctx)) };
    },
  },
];
