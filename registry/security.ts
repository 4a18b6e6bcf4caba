/**
 * TLS and authentication to etcd (docs/cluster.md, "TLS and authentication"): what a router or a registry verb
 * gives besides the URL, checked and read before anything dials.
 *
 *   ca            PEM file: the CA(s) that signed etcd's server certificate (`etcds://` only; default: Node's
 *                 trusted roots). The server's certificate must name the HOST of the URL (a DNS name or an IP SAN).
 *   cert + key    PEM files: a client certificate and its key, for etcd's `--client-cert-auth` (`etcds://` only).
 *   user          an etcd user (etcd's `auth enable`): the client trades user and password for a token.
 *   passwordFile  the password, first line of a file — or `password`, taken from the environment
 *                 (VPOOLFS_REGISTRY_PASSWORD) by the caller. Never a flag (it would show in `ps`) nor a config
 *                 value (config files get copied around); the file wins over the environment.
 *
 * Each problem is a RegistryConfigError naming the setting (`keys` says how the caller spells them: the mount's
 * config keys, the verbs' flags).
 */
import { readFileSync } from 'node:fs';
import { RegistryConfigError, registryUsesTls } from './etcd-url.js';

export const REGISTRY_PASSWORD_ENV = 'VPOOLFS_REGISTRY_PASSWORD';

export interface RegistrySecurity {
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
  /** The password itself (from VPOOLFS_REGISTRY_PASSWORD); `passwordFile` wins. */
  password?: string;
}

/** How the caller names each setting in its messages. */
export type SecurityKeys = Record<keyof RegistrySecurity, string>;

export const CONFIG_KEYS: SecurityKeys = { ca: 'registryCa', cert: 'registryCert', key: 'registryKey', user: 'registryUser', passwordFile: 'registryPasswordFile', password: REGISTRY_PASSWORD_ENV };

/** What etcd3 takes, read from the files; `summary` says it for logs and errors (file names, the user, never the password). */
export interface RegistryCredentials {
  tls: { rootCertificate?: Buffer; certChain?: Buffer; privateKey?: Buffer } | null;
  auth: { username: string; password: string } | null;
  summary: string;
  security: RegistrySecurity;
  keys: SecurityKeys;
}

function readPem(file: string, key: string, what: string): Buffer {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    throw new RegistryConfigError(`${key} ${file}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!buf.toString('latin1').includes('-----BEGIN ')) throw new RegistryConfigError(`${key} ${file}: not PEM (expected ${what} as "-----BEGIN …")`);
  return buf;
}

/** Checks the settings against the URL and reads the files; throws RegistryConfigError naming the setting. */
export function loadRegistryCredentials(url: string, sec: RegistrySecurity = {}, keys: SecurityKeys = CONFIG_KEYS): RegistryCredentials {
  const tls = registryUsesTls(url);
  for (const k of ['ca', 'cert', 'key'] as const) {
    if (sec[k] !== undefined && !tls) throw new RegistryConfigError(`${keys[k]}: only with TLS to etcd — the registry ${url} is plain etcd://; write etcds://HOST:PORT[,…]`);
  }
  if ((sec.cert === undefined) !== (sec.key === undefined)) throw new RegistryConfigError(`${sec.cert === undefined ? keys.key : keys.cert}: a client certificate needs both ${keys.cert} and ${keys.key} (${sec.cert === undefined ? keys.cert : keys.key} is missing)`);
  const parts: string[] = [];
  let creds: RegistryCredentials['tls'] = null;
  if (tls) {
    creds = {};
    if (sec.ca !== undefined) creds.rootCertificate = readPem(sec.ca, keys.ca, 'the CA certificate');
    if (sec.cert !== undefined && sec.key !== undefined) {
      creds.certChain = readPem(sec.cert, keys.cert, 'the client certificate');
      creds.privateKey = readPem(sec.key, keys.key, 'the client key');
    }
    parts.push(`TLS with ${sec.ca === undefined ? "the system's trusted CAs" : `CA ${sec.ca}`}${sec.cert === undefined ? '' : `, client certificate ${sec.cert}`}`);
  }
  let auth: RegistryCredentials['auth'] = null;
  if (sec.passwordFile !== undefined && sec.user === undefined) throw new RegistryConfigError(`${keys.passwordFile}: a password needs a user: give ${keys.user}`);
  if (sec.user !== undefined) {
    let password: string;
    let from: string;
    if (sec.passwordFile !== undefined) {
      try {
        password = readFileSync(sec.passwordFile, 'utf8').split('\n')[0].replace(/\r$/, '');
      } catch (err) {
        throw new RegistryConfigError(`${keys.passwordFile} ${sec.passwordFile}: cannot read the password (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      from = sec.passwordFile;
    } else if (sec.password !== undefined) {
      password = sec.password;
      from = `$${REGISTRY_PASSWORD_ENV}`;
    } else {
      throw new RegistryConfigError(`${keys.user} ${sec.user}: which password? Give ${keys.passwordFile} FILE (its first line) or set ${REGISTRY_PASSWORD_ENV}`);
    }
    if (password === '') throw new RegistryConfigError(`${keys.user} ${sec.user}: the password from ${from} is empty`);
    auth = { username: sec.user, password };
    parts.push(`user '${sec.user}' (password from ${from})`);
  }
  return { tls: creds, auth, summary: parts.length === 0 ? 'plain, no user' : parts.join(', '), security: sec, keys };
}
