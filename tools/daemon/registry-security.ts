/**
 * The mount's TLS and authentication settings for the registry (docs/cluster.md, "TLS and authentication"):
 * the config keys registryCa, registryCert, registryKey, registryUser, registryPasswordFile (or their flags:
 * ./registry-flags.ts), and
 * the password from $VPOOLFS_REGISTRY_PASSWORD when no file is given. Checked and read before anything is
 * opened, so that a missing file or a user without a password refuses the mount at once (ConfigError).
 * And what the management API's GET /v1/routers answers from: this router's own etcd client.
 */
import type { Etcd3 } from 'etcd3';
import { registryFailure } from '../../registry/diagnose.js';
import { RegistryConfigError } from '../../registry/etcd-url.js';
import { listRouters, type RouterRow } from '../../registry/router-list.js';
import { loadRegistryCredentials, REGISTRY_PASSWORD_ENV, type RegistryCredentials } from '../../registry/security.js';
import { ConfigError, type ResolvedMount } from './config.js';
import { registrySettingNames, registrySettings } from './registry-flags.js';

const FLAG_AND_KEY = registrySettingNames('config');

/** The registry's credentials for `cfg` (undefined without a registry); a ConfigError naming the key otherwise. */
export function mountRegistrySecurity(cfg: ResolvedMount, env: NodeJS.ProcessEnv = process.env): RegistryCredentials | undefined {
  const given = registrySettings(cfg);
  if (cfg.registry === undefined) {
    const stray = (Object.keys(given) as Array<keyof typeof given>).find((k) => given[k] !== undefined);
    if (stray !== undefined) throw new ConfigError(`${FLAG_AND_KEY[stray]}: only with --registry (registry)`);
    return undefined;
  }
  const password = env[REGISTRY_PASSWORD_ENV];
  try {
    return loadRegistryCredentials(cfg.registry, { ...given, ...(password === undefined || password === '' ? {} : { password }) }, FLAG_AND_KEY);
  } catch (err) {
    if (err instanceof RegistryConfigError) throw new ConfigError(err.message);
    throw err;
  }
}

/** `router list` through the mount: the routers as this router's registry client reads them; a failure says why (registry/diagnose.ts). */
export function sessionRouters(url: string, client: Etcd3, creds: RegistryCredentials | undefined): { url: string; routers(): Promise<RouterRow[]> } {
  return {
    url,
    routers: async () => {
      try {
        return await listRouters(client);
      } catch (err) {
        throw await registryFailure(url, creds, err);
      }
    },
  };
}
