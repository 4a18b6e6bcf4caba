/**
 * Prometheus metrics (prom-client) for a mount: operations by kind and result, bytes read and written,
 * latency histograms per operation, open handles, and the write-cache state (dirty bytes, upload
 * backlog) summed over the vDisks open right now, their DTL modes and states, and the caches (bytes, limits, read-cache hit ratio).
 * Per-vDisk I/O for the busiest vDisks (vdisk-metrics.ts), the backend by operation (backend-metrics.ts),
 * the process under the same `vpoolfs_` prefix (process-metrics.ts). docs/grafana-dashboard.json charts them.
 * Served on HOST:PORT at /metrics when --metrics is given.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FdTable } from '../../fuse/fds.js';
import type { OpObserver } from '../../fuse/observe.js';
import { logger } from '../../util/log.js';
import type { CacheStats, ScrubTotals } from '../../volume/types.js';
import { BackendMetrics } from './backend-metrics.js';
import { registerProcessMetrics } from './process-metrics.js';
import { VdiskMetrics } from './vdisk-metrics.js';

const log = logger('metrics');

export class FuseMetrics implements OpObserver {
  readonly registry = new Registry();
  private readonly ops: Counter<'op' | 'result'>;
  private readonly bytes: Counter<'kind'>;
  private readonly latency: Histogram<'op'>;
  private readonly okChildren = new Map<string, { inc(): void }>();
  private readonly errChildren = new Map<string, { inc(): void }>();
  private readonly latChildren = new Map<string, { observe(v: number): void }>();
  private readonly readBytes: { inc(v: number): void };
  private readonly writeBytes: { inc(v: number): void };
  private readonly vdisks: VdiskMetrics;
  /** Wraps the backend so that its requests are counted (before the vPool opens it). */
  readonly backend: BackendMetrics;
  private fds: () => FdTable | undefined = () => undefined;
  private caches: () => CacheStats | undefined = () => undefined;

  /** The mount's open files, the vPool's caches and its scrub counts, once they exist. */
  attach(fds: () => FdTable | undefined, caches: () => CacheStats, scrub?: () => ScrubTotals): void {
    this.fds = fds;
    this.caches = caches;
    if (scrub !== undefined) {
      // counts since the daemon started (docs/scrubbing.md): gauges read at scrape time, like the cache counts
      const sg = (name: string, help: string, value: (s: ScrubTotals) => number): Gauge =>
        new Gauge({ name, help, registers: [this.registry], collect() { this.set(value(scrub())); } });
      sg('vpoolfs_scrubs', 'Scrubs applied (or with nothing to do) since start', (s) => s.scrubs);
      sg('vpoolfs_scrub_failures', 'Scrubs that failed since start (stale results included)', (s) => s.failures);
      sg('vpoolfs_scrub_stale', 'Scrub results refused as stale since start', (s) => s.stale);
      sg('vpoolfs_scrub_read_bytes', 'Bytes the scrubs read from the backend since start', (s) => s.bytesRead);
      sg('vpoolfs_scrub_written_bytes', 'Bytes the scrubs wrote to the backend since start', (s) => s.bytesWritten);
      sg('vpoolfs_scrub_reclaimed_bytes', 'Backend bytes the scrubs and gc deleted since start', (s) => s.bytesFreed);
      sg('vpoolfs_scrub_seconds', 'Time spent scrubbing since start', (s) => s.seconds);
    }
  }

  constructor(vpool: string, topVdisks = 10) {
    const fds = () => this.fds();
    const caches = () => this.caches() ?? { writeCacheBytes: 0, writeCacheLimit: 0, writeCacheWaiters: 0, stateDiskFull: false, readCacheBytes: 0, readCacheLimit: 0, readCacheHits: 0, readCacheMisses: 0 };
    this.registry.setDefaultLabels({ vpool });
    registerProcessMetrics(this.registry);
    this.vdisks = new VdiskMetrics(this.registry, topVdisks);
    this.backend = new BackendMetrics(this.registry);
    this.ops = new Counter({ name: 'vpoolfs_fuse_ops_total', help: 'FUSE operations by kind and result', labelNames: ['op', 'result'], registers: [this.registry] });
    this.bytes = new Counter({ name: 'vpoolfs_fuse_bytes_total', help: 'Bytes read and written through the mount', labelNames: ['kind'], registers: [this.registry] });
    this.latency = new Histogram({
      name: 'vpoolfs_fuse_op_duration_seconds',
      help: 'Latency of FUSE operations in the daemon (from handler call to answer)',
      labelNames: ['op'],
      buckets: [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5, 30],
      registers: [this.registry],
    });
    this.readBytes = this.bytes.labels('read');
    this.writeBytes = this.bytes.labels('write');
    const sum = (f: (i: ReturnType<import('../../volume/types.js').VDisk['info']>) => number) =>
      (fds()?.openDisks() ?? []).reduce((acc, d) => acc + f(d.info()), 0);
    new Gauge({ name: 'vpoolfs_open_handles', help: 'Open file handles on the mount', registers: [this.registry], collect() { this.set(fds()?.size ?? 0); } });
    new Gauge({ name: 'vpoolfs_dirty_bytes', help: 'Bytes written but not yet in the backend (open vDisks)', registers: [this.registry], collect() { this.set(sum((i) => i.dirtyBytes)); } });
    new Gauge({
      name: 'vpoolfs_vdisk_dtl',
      help: 'Open vDisks by DTL mode and state (ok_sync, ok_standalone, catchup, degraded)',
      labelNames: ['mode', 'state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const mode of ['none', 'async', 'sync']) for (const state of ['ok_sync', 'ok_standalone', 'catchup', 'degraded']) this.set({ mode, state }, 0);
        for (const d of fds()?.openDisks() ?? []) {
          const { mode, state } = d.info().dtl;
          this.inc({ mode, state });
        }
      },
    });
    new Gauge({ name: 'vpoolfs_upload_backlog_scos', help: 'SCOs waiting for upload (open vDisks)', registers: [this.registry], collect() { this.set(sum((i) => i.uploadBacklog.scos)); } });
    const gauge = (name: string, help: string, value: (c: CacheStats) => number) =>
      new Gauge({ name, help, registers: [this.registry], collect() { this.set(value(caches())); } });
    gauge('vpoolfs_claim_epoch', 'The epoch of this router\'s claim on the vPool\'s backend (docs/cluster.md)', (c) => c.claim?.epoch ?? 0);
    gauge('vpoolfs_claim_fenced', '1 once this router lost its claim to another router: I/O fails, nothing is shipped', (c) => (c.claim?.fenced === true ? 1 : 0));
    gauge('vpoolfs_claim_expired', '1 while the claim could not be renewed for longer than its lease: backend writes wait', (c) => (c.claim?.expired === true ? 1 : 0));
    gauge('vpoolfs_write_cache_bytes', 'Bytes in the local write cache (SCOs, shipped or not)', (c) => c.writeCacheBytes);
    gauge('vpoolfs_write_cache_limit_bytes', 'Write-cache limit', (c) => c.writeCacheLimit);
    gauge('vpoolfs_read_cache_bytes', 'Bytes in the local read cache', (c) => c.readCacheBytes);
    gauge('vpoolfs_read_cache_limit_bytes', 'Read-cache limit', (c) => c.readCacheLimit);
    gauge('vpoolfs_read_cache_hits', 'Read-cache pieces served from the local disk since start', (c) => c.readCacheHits);
    gauge('vpoolfs_read_cache_misses', 'Read-cache pieces fetched from the backend since start', (c) => c.readCacheMisses);
    gauge('vpoolfs_read_cache_hit_ratio', 'Read-cache hits / (hits + misses) since start (0 before any)', (c) =>
      c.readCacheHits + c.readCacheMisses === 0 ? 0 : c.readCacheHits / (c.readCacheHits + c.readCacheMisses));
    new Gauge({
      name: 'vpoolfs_vdisk_faults',
      help: 'Open vDisks with a state-disk fault (user.vdisk.info fault), by errno (EIO, ENOSPC)',
      labelNames: ['code'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const code of ['EIO', 'ENOSPC']) this.set({ code }, 0);
        for (const d of fds()?.openDisks() ?? []) {
          const f = d.info().fault;
          if (f !== null && f !== undefined) this.inc({ code: f.code });
        }
      },
    });
    gauge('vpoolfs_write_cache_waiting_writes', 'Writes waiting for write-cache room', (c) => c.writeCacheWaiters);
    gauge('vpoolfs_state_disk_full', '1 while writes wait because the state disk is full (only the reserve left)', (c) => (c.stateDiskFull ? 1 : 0));
    const open = () => (fds()?.openDisks() ?? []).map((d) => d.info());
    new Gauge({
      name: 'vpoolfs_upload_lag_seconds',
      help: 'Upload lag: the longest any open vDisk has had data not yet in the backend (0: everything shipped)',
      registers: [this.registry],
      collect() {
        this.set(Math.max(0, ...open().map((i) => i.uploadLagMs)) / 1000);
      },
    });
    new Gauge({ name: 'vpoolfs_dtl_queued_bytes', help: 'DTL lag: bytes recorded for the DTL but not yet on its server (open vDisks)', registers: [this.registry], collect() { this.set(sum((i) => i.dtlQueuedBytes)); } });
    new Gauge({ name: 'vpoolfs_upload_backlog_tlogs', help: 'TLogs waiting for upload (open vDisks)', registers: [this.registry], collect() { this.set(sum((i) => i.uploadBacklog.tlogs)); } });
  }

  done(op: string, startNs: bigint, code: number, path: string | undefined): void {
    const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
    this.vdisks.record(op, path, seconds, code);
    let lat = this.latChildren.get(op);
    if (!lat) this.latChildren.set(op, (lat = this.latency.labels(op)));
    lat.observe(seconds);
    const map = code < 0 ? this.errChildren : this.okChildren;
    let c = map.get(op);
    if (!c) map.set(op, (c = this.ops.labels(op, code < 0 ? 'error' : 'ok')));
    c.inc();
    if (code > 0) {
      if (op === 'read') this.readBytes.inc(code);
      else if (op === 'write') this.writeBytes.inc(code);
    }
  }
}

export interface MetricsServer {
  readonly address: string;
  close(): Promise<void>;
}

export async function serveMetrics(host: string, port: number, registry: Registry): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  log.info('metrics listening', { address, path: '/metrics' });
  return {
    address,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
