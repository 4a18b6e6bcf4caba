/**
 * The DTL as the vPool sees it (volume/vdisk/dtl-hook.ts DtlProvider), built by the composition root from the
 * mount's options: the servers (in order), the shared secret, the default mode, the retry interval.
 */
import type { DtlProvider } from '../volume/vdisk/dtl-hook.js';
import type { DtlSink, DtlVDisk } from '../volume/vdisk/dtl-sink.js';
import type { DtlMode } from '../volume/types.js';
import { DtlBridge } from './bridge.js';
import { DtlError } from './errors.js';
import { Reachability, recoverFromDtl } from './recover.js';

export interface DtlConfig {
  servers: string[];
  defaultMode: DtlMode;
  router: string;
  /** How long to wait between attempts while no server is reachable (default 5000 ms). */
  retryMs?: number;
  secret?: Buffer;
  /** Per request (default 5000 ms). */
  timeoutMs?: number;
  /** With a registry: the servers of `servers` on the address of routers whose lease expired, and why (recover.ts). */
  gone?: (servers: string[]) => Promise<Map<string, string>>;
}

export function dtlProvider(cfg: DtlConfig): DtlProvider {
  if (cfg.servers.length === 0) throw new DtlError('INVALID', 'a DTL needs at least one server');
  const opts = { servers: cfg.servers, secret: cfg.secret, timeoutMs: cfg.timeoutMs ?? 5000, router: cfg.router, retryMs: cfg.retryMs ?? 5000 };
  // the recoveries of this vPool's vDisks share what they found unreachable (recover.ts)
  const reach = new Reachability(undefined, cfg.gone);
  return {
    defaultMode: cfg.defaultMode,
    sink: (v: DtlVDisk, mode: DtlMode): DtlSink => new DtlBridge(v, mode, opts),
    recover: (v: DtlVDisk) => recoverFromDtl(v, opts, undefined, reach),
    recoverLocal: (v: DtlVDisk, fromSco: number) => recoverFromDtl(v, opts, fromSco, reach),
  };
}
