/**
 * The DTL of a mount: from the resolved options (`--dtl`, `--dtl-server`, config keys `dtlSecretFile`,
 * `dtlRetryMs`) to the DtlProvider the vPool takes, or undefined when no server is configured (then
 * every vDisk is `none`). Problems are ConfigErrors naming the option.
 */
import { readSecretFile } from '../../dtl-client/auth.js';
import { DtlError } from '../../dtl-client/errors.js';
import { dtlProvider, type DtlConfig } from '../../dtl-client/provider.js';
import type { DtlProvider } from '../../volume/vdisk/dtl-hook.js';
import { ConfigError, type ResolvedMount } from './config.js';

/**
 * Refuses a DTL mode without a server; reads the secret. `gone`: with a registry, which servers went with a router
 * whose lease expired (tools/daemon/dtl-registry.ts: the DTL recovery of a takeover asks them last).
 */
export function dtlForMount(cfg: ResolvedMount, gone?: DtlConfig['gone']): DtlProvider | undefined {
  if (cfg.dtlServer === undefined || cfg.dtlServer.length === 0) {
    if (cfg.dtl !== 'none') throw new ConfigError(`--dtl ${cfg.dtl}: needs --dtl-server HOST:PORT[,HOST:PORT…] (the DTL runs on another host: vpoolfs dtl-server)`);
    if (cfg.dtlSecretFile !== undefined) throw new ConfigError('dtlSecretFile: set, but no --dtl-server to use it with');
    return undefined;
  }
  let secret: Buffer | undefined;
  try {
    secret = cfg.dtlSecretFile === undefined ? undefined : readSecretFile(cfg.dtlSecretFile);
  } catch (err) {
    if (err instanceof DtlError) throw new ConfigError(`--dtl-secret-file: ${err.message}`);
    throw err;
  }
  return dtlProvider({ servers: cfg.dtlServer, defaultMode: cfg.dtl, router: cfg.router, retryMs: cfg.dtlRetryMs ?? 5000, secret, gone });
}
