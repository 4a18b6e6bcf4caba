/**
 * Per-vDisk I/O metrics with a bounded label count: the daemon keeps, for every vDisk path, its operations,
 * bytes and time spent (cheap counters in a map), and each scrape exports them for the N busiest vDisks
 * only (`--metrics-top-vdisks`, default 10; 0: none), so a pool of thousands of vDisks cannot blow up the
 * series count. Counters stay monotonic per vDisk; a vDisk may leave and re-enter the top N (its series
 * then pauses and resumes). Mean latency = rate(seconds) / rate(ops).
 */
import { Counter, type Registry } from 'prom-client';

/** The operations that go to a vDisk's data. */
const DATA_OPS = new Set(['read', 'write', 'fsync', 'flush', 'fallocate']);

interface Stats {
  ops: Map<string, { n: number; seconds: number }>;
  readBytes: number;
  writeBytes: number;
  total: number;
}

export class VdiskMetrics {
  private readonly stats = new Map<string, Stats>();

  constructor(registry: Registry, private readonly topN: number) {
    const top = () => [...this.stats.entries()].sort((a, b) => b[1].total - a[1].total).slice(0, this.topN);
    new Counter({
      name: 'vpoolfs_vdisk_ops_total',
      help: 'I/O operations on a vDisk by operation, for the N busiest vDisks (--metrics-top-vdisks)',
      labelNames: ['vdisk', 'op'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [vdisk, s] of top()) for (const [op, o] of s.ops) this.labels(vdisk, op).inc(o.n);
      },
    });
    new Counter({
      name: 'vpoolfs_vdisk_op_seconds_total',
      help: 'Time spent in the daemon on a vDisk by operation (divide by ops for the mean latency), N busiest vDisks',
      labelNames: ['vdisk', 'op'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [vdisk, s] of top()) for (const [op, o] of s.ops) this.labels(vdisk, op).inc(o.seconds);
      },
    });
    new Counter({
      name: 'vpoolfs_vdisk_bytes_total',
      help: 'Bytes read and written on a vDisk, N busiest vDisks',
      labelNames: ['vdisk', 'kind'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [vdisk, s] of top()) {
          this.labels(vdisk, 'read').inc(s.readBytes);
          this.labels(vdisk, 'write').inc(s.writeBytes);
        }
      },
    });
  }

  record(op: string, path: string | undefined, seconds: number, code: number): void {
    if (this.topN === 0 || path === undefined || !DATA_OPS.has(op) || code < 0) return;
    let s = this.stats.get(path);
    if (!s) this.stats.set(path, (s = { ops: new Map(), readBytes: 0, writeBytes: 0, total: 0 }));
    let o = s.ops.get(op);
    if (!o) s.ops.set(op, (o = { n: 0, seconds: 0 }));
    o.n++;
    o.seconds += seconds;
    s.total++;
    if (op === 'read' && code > 0) s.readBytes += code;
    else if (op === 'write' && code > 0) s.writeBytes += code;
  }
}
