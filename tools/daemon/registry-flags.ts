/**
 * The registry's TLS and user settings (registry/security.ts), declared once for everything that talks to etcd:
 * each setting's flag, its config key (commander's camelCase of the flag, so a flag and a config key are the
 * same field), its environment variable and its help. From this table come the options of `vpoolfs mount`
 * (flag or config file) and of the registry verbs (`router list`, `takeover`, `move`: flag or environment),
 * the settings read from either, and the names their errors give each setting.
 */
import type { Command } from 'commander';
import { REGISTRY_PASSWORD_ENV, type RegistrySecurity, type SecurityKeys } from '../../registry/security.js';

/** The settings as flags and config keys; the password itself is never one (only $VPOOLFS_REGISTRY_PASSWORD). */
export interface RegistrySecurityFlags {
  /** etcds://: the CA (PEM) that signed etcd's server certificate (default: the system's trusted CAs). */
  registryCa?: string;
  /** etcds://: a client certificate and its key (PEM) for etcd's --client-cert-auth. */
  registryCert?: string;
  registryKey?: string;
  /** An etcd user (etcd's auth); the password from registryPasswordFile or $VPOOLFS_REGISTRY_PASSWORD, never in a config file. */
  registryUser?: string;
  /** The etcd user's password: the first line of this file. */
  registryPasswordFile?: string;
}

type Setting = Exclude<keyof RegistrySecurity, 'password'>;

interface SettingSpec {
  flag: string;
  arg: string;
  key: keyof RegistrySecurityFlags;
  env: string;
  help: string;
  /** What applies when it is not given at all (said in the help). */
  otherwise?: string;
}

const SETTINGS: Record<Setting, SettingSpec> = {
  ca: { flag: '--registry-ca', arg: '<file>', key: 'registryCa', env: 'VPOOLFS_REGISTRY_CA', help: "with etcds://: the CA (PEM) that signed etcd's certificate", otherwise: "the system's trusted CAs" },
  cert: { flag: '--registry-cert', arg: '<file>', key: 'registryCert', env: 'VPOOLFS_REGISTRY_CERT', help: "with etcds://: a client certificate (PEM) for etcd's --client-cert-auth, with --registry-key" },
  key: { flag: '--registry-key', arg: '<file>', key: 'registryKey', env: 'VPOOLFS_REGISTRY_KEY', help: 'the key (PEM) of --registry-cert' },
  user: { flag: '--registry-user', arg: '<name>', key: 'registryUser', env: 'VPOOLFS_REGISTRY_USER', help: `an etcd user (etcd auth); its password from --registry-password-file or $${REGISTRY_PASSWORD_ENV}` },
  passwordFile: { flag: '--registry-password-file', arg: '<file>', key: 'registryPasswordFile', env: 'VPOOLFS_REGISTRY_PASSWORD_FILE', help: "the etcd user's password (first line of the file)" },
};

const SETTING_NAMES = Object.keys(SETTINGS) as Setting[];

/**
 * Where a setting not given as a flag comes from: `config` — the mount's config file (the same key); `env` — the
 * registry verbs' environment variables.
 */
export type RegistrySettingSource = 'config' | 'env';

/** Adds the five flags to `cmd`, their help saying where else each may come from. */
export function addRegistrySecurityOptions(cmd: Command, source: RegistrySettingSource): Command {
  for (const s of SETTING_NAMES) {
    const { flag, arg, env, help, otherwise } = SETTINGS[s];
    const dflt = source === 'env' ? `$${env}${otherwise === undefined ? '' : `, else ${otherwise}`}` : otherwise;
    cmd.option(`${flag} ${arg}`, dflt === undefined ? help : `${help} (default: ${dflt})`);
  }
  return cmd;
}

/** How the errors name each setting: its flag and, in brackets, the config key or the environment variable. */
export function registrySettingNames(source: RegistrySettingSource): SecurityKeys {
  const names = { password: REGISTRY_PASSWORD_ENV } as SecurityKeys;
  for (const s of SETTING_NAMES) names[s] = `${SETTINGS[s].flag} (${source === 'env' ? SETTINGS[s].env : SETTINGS[s].key})`;
  return names;
}

/** The settings given in `flags` (flags merged with a config file); with `env`, each one missing from its variable (an empty one counts as not set). */
export function registrySettings(flags: RegistrySecurityFlags, env?: NodeJS.ProcessEnv): Omit<RegistrySecurity, 'password'> {
  const out: Omit<RegistrySecurity, 'password'> = {};
  for (const s of SETTING_NAMES) {
    const fromEnv = env?.[SETTINGS[s].env];
    out[s] = flags[SETTINGS[s].key] ?? (fromEnv === '' ? undefined : fromEnv);
  }
  return out;
}
