/**
 * The process metrics (prom-client's defaults) under one prefix, `vpoolfs_` (`vpoolfs_process_cpu_seconds_total`,
 * `vpoolfs_nodejs_heap_size_used_bytes` …), with the event-loop delay figures replaced: prom-client reads
 * them from a histogram that an idle daemon's loop never fills (it records only when the loop turns), and
 * then exports the empty histogram's min (9223372036.85 s) and mean (NaN). Here a window without samples
 * exports 0 and the count of samples says how many there were.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

export const METRICS_PREFIX = 'vpoolfs_';
const LAG_STATS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const;

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: METRICS_PREFIX });
  for (const s of LAG_STATS) registry.removeSingleMetric(`${METRICS_PREFIX}nodejs_eventloop_lag_${s}_seconds`);
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let window = { count: 0, min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 };
  // one snapshot per scrape, taken by the first gauge collected, then the histogram starts over
  let taken = 0;
  const snapshot = () => {
    const now = Date.now();
    if (now - taken < 50) return window;
    taken = now;
    const n = h.count;
    window = n === 0
      ? { count: 0, min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 }
      : { count: n, min: h.min / 1e9, max: h.max / 1e9, mean: h.mean / 1e9, stddev: h.stddev / 1e9, p50: h.percentile(50) / 1e9, p90: h.percentile(90) / 1e9, p99: h.percentile(99) / 1e9 };
    h.reset();
    return window;
  };
  for (const s of LAG_STATS) {
    new Gauge({
      name: `${METRICS_PREFIX}nodejs_eventloop_lag_${s}_seconds`,
      help: `The ${s} of the event loop delay since the last scrape (0 when the loop did not turn: an idle daemon)`,
      registers: [registry],
      collect() {
        this.set(snapshot()[s]);
      },
    });
  }
  new Gauge({
    name: `${METRICS_PREFIX}nodejs_eventloop_lag_samples`,
    help: 'Event loop delay samples behind the lag figures of this scrape',
    registers: [registry],
    collect() {
      this.set(snapshot().count);
    },
  });
}
