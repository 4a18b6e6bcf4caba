/**
 * Backend metrics by operation: wraps the vPool's BlobStore (a Proxy, so anything else the store has passes
 * through untouched) and counts, per operation (put, get, getRange, head, list, delete), the requests and
 * their result, the bytes moved, and the latency. Installed only with --metrics.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { VpoolError } from '../../util/errors.js';
import type { BlobStore } from '../../volume/backend/types.js';

const OPS = ['put', 'get', 'getRange', 'head', 'list', 'delete'] as const;
type Op = (typeof OPS)[number];

export class BackendMetrics {
  private readonly requests: Counter<'op' | 'result'>;
  private readonly bytes: Counter<'op'>;
  private readonly errors: Counter<'op' | 'code'>;
  private readonly latency: Histogram<'op'>;

  constructor(registry: Registry) {
    this.requests = new Counter({ name: 'vpoolfs_backend_requests_total', help: 'Backend requests by operation and result (ok, error)', labelNames: ['op', 'result'], registers: [registry] });
    this.bytes = new Counter({ name: 'vpoolfs_backend_bytes_total', help: 'Bytes sent (put) and received (get, getRange) by operation', labelNames: ['op'], registers: [registry] });
    this.errors = new Counter({ name: 'vpoolfs_backend_errors_total', help: 'Failed backend requests by operation and error code (BACKEND, NOT_FOUND, CHECKSUM …)', labelNames: ['op', 'code'], registers: [registry] });
    this.latency = new Histogram({
      name: 'vpoolfs_backend_request_duration_seconds',
      help: 'Latency of backend requests by operation',
      labelNames: ['op'],
      buckets: [1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    for (const op of OPS) {
      // every series there from the start (a rate over a series that appears only on the first error is lost)
      this.requests.labels(op, 'ok').inc(0);
      this.requests.labels(op, 'error').inc(0);
      this.bytes.labels(op).inc(0);
    }
  }

  private done(op: Op, start: bigint, err: unknown, bytes: number): void {
    this.latency.labels(op).observe(Number(process.hrtime.bigint() - start) / 1e9);
    this.requests.labels(op, err === undefined ? 'ok' : 'error').inc();
    if (err !== undefined) this.errors.labels(op, err instanceof VpoolError ? err.code : 'UNEXPECTED').inc();
    else if (bytes > 0) this.bytes.labels(op).inc(bytes);
  }

  /** The store, measured. */
  wrap(store: BlobStore): BlobStore {
    const self = this;
    const sizeOf = (op: Op, args: unknown[], result: unknown): number => {
      if (op === 'put') return (args[1] as Uint8Array).length;
      if ((op === 'get' || op === 'getRange') && Buffer.isBuffer(result)) return result.length;
      return 0;
    };
    return new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function' || !(OPS as readonly (string | symbol)[]).includes(prop)) return typeof value === 'function' ? value.bind(target) : value;
        const op = prop as Op;
        return (...args: unknown[]) => {
          const start = process.hrtime.bigint();
          return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args).then(
            (res) => {
              self.done(op, start, undefined, sizeOf(op, args, res));
              return res;
            },
            (err: unknown) => {
              self.done(op, start, err ?? new Error('rejected'), 0);
              throw err;
            },
          );
        };
      },
    });
  }
}
