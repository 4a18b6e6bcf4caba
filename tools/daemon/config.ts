/**
 * The `mount` configuration: the JSON config file (DESIGN §1: the flags' keys in camelCase plus tuning),
 * its validation, and how flags, file and defaults combine (flag > file > default). Every problem is a
 * ConfigError with a message that names the key and what was expected.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkCron, type ScheduleConfig } from '../../volume/snapshots/snapshot-schedule.js';
import { parseNbdAddress } from '../../nbd/address.js';
import { parseRegistryUrl } from '../../registry/etcd-url.js';
import type { RegistrySecurityFlags } from './registry-flags.js';
import { limitProblems, type ScrubLimits } from '../../volume/scrub/throttle.js';

export class ConfigError extends Error {}

export type DtlMode = 'none' | 'async' | 'sync';
const DTL_MODES: readonly string[] = ['none', 'async', 'sync'];
const LOG_LEVELS: readonly string[] = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'];

/** Keys of the config file; the flags of `vpoolfs mount` use the same names. The registry's TLS and user settings (registryCa, …) are in ./registry-flags.ts. */
export interface MountConfig extends RegistrySecurityFlags {
  vpool?: string;
  state?: string;
  backend?: string;
  encryptionKeyFile?: string;
  /** Key rotation (docs/encryption.md): the previous key(s), read with until the rekey job has rewritten every object. */
  oldEncryptionKeyFile?: string[];
  /** The rekey job's budget: at most this many objects re-encrypted per second (default: no limit). */
  rekeyObjectsPerSecond?: number;
  /** A backend move (docs/scrubbing.md, "Policy updates"): the old backend's URL; `backend` is the new one. */
  moveFrom?: string;
  /** The move job's budget: at most this many objects copied per second (default: no limit). */
  moveObjectsPerSecond?: number;
  dtl?: DtlMode;
  dtlServer?: string[];
  /** The DTL's shared secret (the servers' --secret-file). */
  dtlSecretFile?: string;
  /** While no DTL server is reachable, how often to try again (ms, default 5000). */
  dtlRetryMs?: number;
  router?: string;
  metrics?: string;
  /** Per-vDisk metrics for the N busiest vDisks (default 10, 0: none): a bounded label count (tools/metrics/metrics.ts). */
  metricsTopVdisks?: number;
  /** HOST:PORT: the management API on TCP too (it is always on `<state>/api.sock`); needs apiTokenFile off loopback. */
  api?: string;
  /** The token TCP clients of the API must send (`Authorization: Bearer …`), first line of the file. */
  apiTokenFile?: string;
  scoClusters?: number;
  tlogScos?: number;
  writeCacheBytes?: number;
  readCacheBytes?: number;
  scoMaxAgeMs?: number;
  /** A vDisk writes a map checkpoint to the backend every this many TLogs (default 128, 0: never; docs/durability.md). */
  checkpointEveryTlogs?: number;
  /** The lease of the claim on the backend (ms, default 30000; docs/cluster.md): renewed every third of it. */
  claimLeaseMs?: number;
  /** etcd://HOST:PORT[,HOST:PORT…] (etcds://… for TLS): the router registers there and owns its vPool through it (docs/cluster.md). */
  registry?: string;
  /** This router's failure domain (a rack, a room), recorded in the registry. */
  failureDomain?: string;
  /** The TTL of the router's lease in the registry (seconds, default 10, at least 2). */
  registryLeaseSeconds?: number;
  /** With a registry: where the router link listens (HOST:PORT, default 127.0.0.1:0); off loopback only with peerSecretFile. */
  peerListen?: string;
  /** The router link's shared secret (the same file on every router of the vPool). */
  peerSecretFile?: string;
  /** A follower's calls wait at most this long while no router serves the vPool (ms, default 60000), then EIO. */
  peerWaitMs?: number;
  /**
   * With a registry: a vDisk moves by itself to the one other router holding it open for writing once the router serving it
   * has held none for `autoMoveAfterMs` (default true; the end of a live migration, per vDisk:
   * tools/daemon/vdisk-automove.ts, docs/cluster.md "Ownership per vDisk").
   */
  autoMove?: boolean;
  /** How long the router serving a vDisk must hold no handle of it before an automatic move (ms, default 2000). */
  autoMoveAfterMs?: number;
  /** No automatic move of a vDisk within this long of its last change of router (ms, default 30000): the ping-pong guard. */
  autoMoveHoldMs?: number;
  logLevel?: string;
  /** Automatic snapshots and retention: cron specs, null to disable (volume/snapshots/snapshot-schedule.ts); applied live. */
  schedule?: ScheduleConfig;
  /** The scrubber's budget and its yielding to the vDisks' I/O (volume/scrub/throttle.ts, docs/scrubbing.md); applied live. */
  scrub?: Partial<ScrubLimits>;
  /** `kernel` (default): vpoolfs speaks the FUSE protocol on /dev/fuse itself; `fuse-native`: libfuse2 (DESIGN §1). */
  fuseEngine?: FuseEngineName;
  /** NBD listeners, `unix:/PATH` or `HOST:PORT` (nbd/server.ts); default none. */
  nbd?: string[];
  /** TLS certificate and key (PEM) for the NBD TCP listeners (STARTTLS); required off loopback. */
  nbdTlsCert?: string;
  nbdTlsKey?: string;
}

export type FuseEngineName = 'kernel' | 'fuse-native';
const FUSE_ENGINES: readonly string[] = ['kernel', 'fuse-native'];

/** Keys that apply while mounted; any other change needs a restart. */
export const LIVE_KEYS: ReadonlySet<keyof MountConfig> = new Set(['logLevel', 'writeCacheBytes', 'readCacheBytes', 'schedule', 'scrub']);

type Check = (v: unknown, key: string) => unknown;

const str: Check = (v, key) => {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${key}: expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
};
const count: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${key}: expected a positive integer, got ${JSON.stringify(v)}`);
  return v;
};
const bytes: Check = (v, key) => {
  const n = typeof v === 'string' ? parseSizeOrNull(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw new ConfigError(`${key}: expected a size in bytes (a positive integer or like 512M, 1G), got ${JSON.stringify(v)}`);
  return n;
};

const CHECKS: Record<keyof MountConfig, Check> = {
  vpool: (v, k) => checkVpoolName(str(v, k) as string, k),
  state: str,
  backend: (v, k) => checkBackendUrl(str(v, k) as string, k),
  encryptionKeyFile: str,
  oldEncryptionKeyFile: (v, k) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((f) => typeof f !== 'string' || f === '')) throw new ConfigError(`${k}: expected a file name or an array of file names, got ${JSON.stringify(v)}`);
    return list;
  },
  rekeyObjectsPerSecond: (v, k) => {
    const n = typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`${k}: expected a positive number of objects per second, got ${JSON.stringify(v)}`);
    return n;
  },
  moveFrom: (v, k) => checkBackendUrl(str(v, k) as string, k),
  moveObjectsPerSecond: (v, k) => {
    const n = typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`${k}: expected a positive number of objects per second, got ${JSON.stringify(v)}`);
    return n;
  },
  dtl: (v, k) => {
    if (typeof v !== 'string' || !DTL_MODES.includes(v)) throw new ConfigError(`${k}: expected one of none, async, sync, got ${JSON.stringify(v)}`);
    return v;
  },
  dtlServer: (v, k) => {
    const list = typeof v === 'string' ? v.split(',') : v;
    if (!Array.isArray(list) || list.length === 0) throw new ConfigError(`${k}: expected HOST:PORT[,HOST:PORT…] or an array of HOST:PORT, got ${JSON.stringify(v)}`);
    return list.map((s) => {
      parseHostPort(typeof s === 'string' ? s.trim() : String(s), k);
      return (s as string).trim();
    });
  },
  dtlSecretFile: str,
  dtlRetryMs: count,
  router: str,
  metrics: (v, k) => {
    parseHostPort(str(v, k) as string, k);
    return v;
  },
  metricsTopVdisks: (v, k) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 1000) throw new ConfigError(`${k}: expected an integer 0..1000, got ${JSON.stringify(v)}`);
    return v;
  },
  api: (v, k) => {
    parseHostPort(str(v, k) as string, k);
    return v;
  },
  apiTokenFile: str,
  scoClusters: count,
  tlogScos: count,
  writeCacheBytes: bytes,
  readCacheBytes: bytes,
  scoMaxAgeMs: count,
  checkpointEveryTlogs: (v, k) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${k}: expected a whole number of TLogs (0: no checkpoints), got ${JSON.stringify(v)}`);
    return v;
  },
  claimLeaseMs: (v, k) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 300) throw new ConfigError(`${k}: expected a lease in ms, at least 300, got ${JSON.stringify(v)}`);
    return v;
  },
  registry: (v, k) => {
    try {
      parseRegistryUrl(str(v, k) as string, k);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    return v;
  },
  registryCa: str,
  registryCert: str,
  registryKey: str,
  registryUser: str,
  registryPasswordFile: str,
  failureDomain: str,
  registryLeaseSeconds: (v, k) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 2) throw new ConfigError(`${k}: expected a lease in whole seconds, at least 2, got ${JSON.stringify(v)}`);
    return v;
  },
  peerListen: (v, k) => {
    parseHostPort(str(v, k) as string, k);
    return v;
  },
  peerSecretFile: str,
  peerWaitMs: count,
  autoMove: (v, k) => {
    if (typeof v !== 'boolean') throw new ConfigError(`${k}: expected true or false, got ${JSON.stringify(v)}`);
    return v;
  },
  autoMoveAfterMs: count,
  autoMoveHoldMs: count,
  logLevel: (v, k) => {
    if (typeof v !== 'string' || !LOG_LEVELS.includes(v)) throw new ConfigError(`${k}: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(v)}`);
    return v;
  },
  fuseEngine: (v, k) => {
    if (typeof v !== 'string' || !FUSE_ENGINES.includes(v)) throw new ConfigError(`${k}: expected kernel or fuse-native, got ${JSON.stringify(v)}`);
    return v;
  },
  nbd: (v, k) => {
    const list = typeof v === 'string' ? v.split(',') : v;
    if (!Array.isArray(list) || list.length === 0) throw new ConfigError(`${k}: expected unix:/PATH or HOST:PORT (several: comma-separated, or an array), got ${JSON.stringify(v)}`);
    return list.map((s) => {
      const text = typeof s === 'string' ? s.trim() : String(s);
      try {
        parseNbdAddress(text, k);
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
      return text;
    });
  },
  nbdTlsCert: str,
  nbdTlsKey: str,
  scrub: (v, k) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${k}: expected an object, got ${JSON.stringify(v)}`);
    const wrong = limitProblems(v as Record<string, unknown>);
    if (wrong.length > 0) throw new ConfigError(`${k}: ${wrong.join('; ')}`);
    return v;
  },
  schedule: (v, k) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${k}: expected an object, got ${JSON.stringify(v)}`);
    for (const [name, spec] of Object.entries(v)) {
      if (name !== 'snapshot' && name !== 'retention' && name !== 'scrub') throw new ConfigError(`${k}: unknown schedule "${name}" (known: snapshot, retention, scrub)`);
      try {
        checkCron(spec, `${k}.${name}`);
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
    }
    return v;
  },
};

/** Validates a parsed config object (from a file, or `flags`: then messages name the flag). Unknown keys are an error. */
export function validateConfig(obj: unknown, source: string): MountConfig {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ConfigError(`${source}: expected a JSON object`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    const check = (CHECKS as Record<string, Check>)[key];
    if (!check) throw new ConfigError(`${source}: unknown key "${key}" (known: ${Object.keys(CHECKS).join(', ')})`);
    if (value === undefined) continue;
    out[key] = check(value, source === 'flags' ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : `${source}: ${key}`);
  }
  return out as MountConfig;
}

export function parseConfigText(text: string, file: string): MountConfig {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return validateConfig(obj, file);
}

export async function loadConfigFile(file: string): Promise<MountConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the config file (${(err as Error).message})`);
  }
  return parseConfigText(text, file);
}

/** Everything `mount` needs, defaults filled in. */
export interface ResolvedMount extends MountConfig {
  mountpoint: string;
  vpool: string;
  state: string;
  backend: string;
  router: string;
  dtl: DtlMode;
}

/** flags > file > defaults (DESIGN §1). */
export function resolveMount(mountpoint: string, flags: MountConfig, file: MountConfig): ResolvedMount {
  const merged: MountConfig = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  const mp = path.resolve(mountpoint);
  const vpool = merged.vpool ?? checkVpoolName(path.basename(mp), 'vpool (basename of MOUNTPOINT)');
  const state = path.resolve(merged.state ?? path.join('/var/lib/vpoolfs', vpool));
  return {
    ...merged,
    mountpoint: mp,
    vpool,
    state,
    backend: merged.backend ?? `file://${path.join(state, 'backend')}`,
    router: merged.router ?? os.hostname(),
    dtl: merged.dtl ?? 'none',
  };
}

/** Which changed keys apply live and which need a restart. */
export function diffConfig(before: MountConfig, after: MountConfig): { live: (keyof MountConfig)[]; restart: (keyof MountConfig)[] } {
  const live: (keyof MountConfig)[] = [];
  const restart: (keyof MountConfig)[] = [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)] as (keyof MountConfig)[]);
  for (const k of keys) {
    if (JSON.stringify(before[k]) === JSON.stringify(after[k])) continue;
    (LIVE_KEYS.has(k) ? live : restart).push(k);
  }
  return { live, restart };
}

function checkVpoolName(name: string, key: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new ConfigError(`${key}: a vPool name is 1–64 of [A-Za-z0-9._-], starting with a letter or digit; got ${JSON.stringify(name)}`);
  return name;
}

function checkBackendUrl(url: string, key: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${key}: not a URL: ${JSON.stringify(url)} (expected file:///dir, s3://bucket/prefix or mem://name)`);
  }
  if (u.protocol === 'file:' && (u.host !== '' || !u.pathname.startsWith('/') || u.pathname === '/')) throw new ConfigError(`${key}: a file:// backend needs an absolute directory, like file:///srv/vpool; got ${JSON.stringify(url)}`);
  if (u.protocol === 's3:' && u.host === '') throw new ConfigError(`${key}: an s3:// backend needs a bucket: s3://bucket/prefix; got ${JSON.stringify(url)}`);
  if (!['file:', 's3:', 'mem:'].includes(u.protocol)) throw new ConfigError(`${key}: unsupported backend scheme ${u.protocol} (file://, s3://, mem://)`);
  return url;
}

/** HOST:PORT with a port 1–65535 (port 0 allowed: pick a free one). `[v6]:port` works too. */
export function parseHostPort(s: string, key: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${key}: expected HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

function parseSizeOrNull(s: string): number | null {
  const m = /^(\d+)\s*([KMGTP]?)(?:i?B)?$/i.exec(s.trim());
  if (!m) return null;
  const n = Number(m[1]) * UNITS[m[2].toUpperCase()];
  return Number.isSafeInteger(n) ? n : null;
}

/** `4096`, `512M`, `10G`, `1TiB` → bytes (binary units, like truncate -s). */
export function parseSize(s: string): number {
  const n = parseSizeOrNull(s);
  if (n === null) throw new ConfigError(`not a size: ${JSON.stringify(s)} (expected bytes, or a number with K, M, G, T or P)`);
  return n;
}
