/**
 * How the registry verbs (`router list`, `takeover`, `move`) open etcd: the URL from `--registry` or
 * $VPOOLFS_REGISTRY (a ConfigError naming the verb when neither is given, or when it is not
 * etcd://HOST:PORT or etcds://HOST:PORT), TLS and the etcd user from the flags `--registry-ca`, `--registry-cert`,
 * `--registry-key`, `--registry-user`, `--registry-password-file` or the environment ($VPOOLFS_REGISTRY_CA,
 * _CERT, _KEY, _USER, _PASSWORD_FILE, and the password itself as $VPOOLFS_REGISTRY_PASSWORD; never a flag),
 * a client with bounded calls (registry/connect.ts), and `down`, which turns an etcd failure into the one-line
 * BACKEND error the CLI prints, saying what failed (registry/diagnose.ts). The caller closes the client.
 */
import type { Command } from 'commander';
import type { Etcd3 } from 'etcd3';
import { connectRegistry } from '../../registry/connect.js';
import { registryFailure } from '../../registry/diagnose.js';
import { RegistryError } from '../../registry/errors.js';
import { RegistryConfigError } from '../../registry/etcd-url.js';
import { loadRegistryCredentials, REGISTRY_PASSWORD_ENV, type RegistryCredentials } from '../../registry/security.js';
import { ConfigError } from '../daemon/config.js';
import { addRegistrySecurityOptions, registrySettingNames, registrySettings, type RegistrySecurityFlags } from '../daemon/registry-flags.js';

export interface OpenedRegistry {
  client: Etcd3;
  url: string;
  credentials: RegistryCredentials;
  /** Rethrows an etcd failure as RegistryError BACKEND naming the registry and what failed. */
  down: (err: unknown) => Promise<never>;
  close(): void;
}

/** The verbs' registry flags (commander's camelCase). */
export interface RegistryFlags extends RegistrySecurityFlags {
  registry?: string;
}

const FLAG_AND_ENV = registrySettingNames('env');

/** Adds `--registry` and the TLS and user flags (tools/daemon/registry-flags.ts) to a verb. */
export function withRegistryOptions(cmd: Command): Command {
  return addRegistrySecurityOptions(cmd.option('--registry <url>', 'etcd://HOST:PORT[,HOST:PORT…] or etcds://… for TLS (default: $VPOOLFS_REGISTRY)'), 'env');
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** `flags`: the verb's flags (or just the URL); each setting not given as a flag comes from the environment. */
export function openRegistry(verb: string, flags: RegistryFlags | string | undefined = {}, env: NodeJS.ProcessEnv = process.env): OpenedRegistry {
  const f: RegistryFlags = typeof flags === 'string' ? { registry: flags } : flags ?? {};
  const url = nonEmpty(f.registry) ?? nonEmpty(env.VPOOLFS_REGISTRY);
  if (url === undefined) throw new ConfigError(`${verb}: which registry? Give --registry etcd://HOST:PORT[,HOST:PORT…] (or VPOOLFS_REGISTRY)`);
  let client: Etcd3;
  let credentials: RegistryCredentials;
  try {
    credentials = loadRegistryCredentials(url, { ...registrySettings(f, env), password: nonEmpty(env[REGISTRY_PASSWORD_ENV]) }, FLAG_AND_ENV);
    client = connectRegistry(url, credentials);
  } catch (err) {
    if (err instanceof RegistryConfigError) throw new ConfigError(err.message);
    throw err;
  }
  return {
    client, url, credentials,
    down: async (err: unknown): Promise<never> => {
      if (err instanceof RegistryError || err instanceof ConfigError) throw err;
      throw await registryFailure(url, credentials, err);
    },
    close: () => client.close(),
  };
}
