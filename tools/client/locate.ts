/**
 * How the CLI goes from a path to the management API of the vPool it is on: every node of a vpoolfs mount
 * answers the extended attribute `user.vpool.api` (fuse/xattr.ts) with JSON naming the daemon's socket
 * (`<state>/api.sock`), its pid, the vPool and the mountpoint. So the CLI reads that attribute (with
 * fs-xattr) on the path — or, for a path still to be created, on its deepest existing directory — and
 * turns the path into one relative to the vPool root. No registry file, no guessing of state directories:
 * whatever is mounted answers for itself, and a path elsewhere is refused with a clear message. On a follower's
 * mount (`--registry`) the vPool's owner answers it: the path is taken relative to the follower's own mount (one
 * namespace: the same path within the vPool) and the owner's API is called; where the owner's socket is not on this
 * host the CLI says so.
 */
import { lstat, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { ApiTarget } from '../../api/client.js';

export const POOL_API_XATTR = 'user.vpool.api';
/** A mount that does not answer within this long is reported as hung (a dead daemon's mount answers ENOTCONN at once). */
const PROBE_MS = 10_000;

export class LocateError extends Error {}

export interface PoolApiInfo {
  socket: string;
  tcp: string | null;
  pid: number;
  vpool: string;
  mountpoint: string;
  version: string;
}

export interface Located {
  /** The path as the user gave it. */
  given: string;
  /** Absolute within the vPool (`/vms/a`; `/` for the root). */
  vpoolPath: string;
  info: PoolApiInfo;
  target: ApiTarget;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LocateError(`${what}: no answer within ${ms / 1000} s (a hung mount?)`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** vpoolfs mounts listed in /proc/self/mountinfo (the source is `vpoolfs:<vpool>`): mountpoint and vPool. */
async function vpoolMounts(): Promise<{ mountpoint: string; vpool: string }[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out: { mountpoint: string; vpool: string }[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const [fstype, source] = right.split(' ');
    if (fstype.startsWith('fuse') && source?.startsWith('vpoolfs:')) {
      out.push({ mountpoint: left.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), vpool: source.slice('vpoolfs:'.length) });
    }
  }
  return out;
}

/** The mountpoints of the vpoolfs mounts here, for the error message. */
export async function mountedVpools(): Promise<string[]> {
  return (await vpoolMounts()).map((m) => m.mountpoint);
}

/**
 * `inside` on a mount of vPool `info.vpool` other than the one `info` names: a follower's mount (with `--registry`
 * every router's mount shows the one namespace, and the vPool's owner answers `user.vpool.api` for all of them).
 * The path within the vPool is the same on every mount; the API is the owner's. Undefined when no such mount holds it.
 */
async function followerMount(inside: string, info: PoolApiInfo): Promise<string | undefined> {
  const holding = (await vpoolMounts()).filter((m) => m.vpool === info.vpool && !path.relative(m.mountpoint, inside).startsWith('..'));
  return holding.sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0]?.mountpoint;
}

async function notOnVpool(file: string, why: string): Promise<LocateError> {
  const pools = await mountedVpools();
  const where = pools.length > 0 ? `mounted vPools: ${pools.join(', ')}` : 'no vPool is mounted here (vpoolfs mount MOUNTPOINT)';
  return new LocateError(`${file}: not on a mounted vPool (${why}); ${where}`);
}

/** The deepest existing path at or above `abs`, and the parts below it that do not exist yet. */
async function existingBase(abs: string): Promise<{ base: string; rest: string[] }> {
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      await within(lstat(cur), PROBE_MS, cur);
      return { base: cur, rest };
    } catch (err) {
      if (err instanceof LocateError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTCONN' || code === 'ECONNABORTED') throw new LocateError(`${cur}: the vPool mounted there does not answer (${code}: its daemon is gone); start it again (vpoolfs mount …), which clears the stale mount`);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new LocateError(`${cur}: ${code}`);
      if (cur === '/') return { base: cur, rest };
      rest.unshift(path.basename(cur));
      cur = path.dirname(cur);
    }
  }
}

/** Finds the vPool `file` is on (it may not exist yet, its directory must). `socket` overrides the API socket. */
export async function locate(file: string, socket?: string): Promise<Located> {
  const abs = path.resolve(file);
  const { base, rest } = await existingBase(abs);
  let real: string;
  try {
    real = await within(realpath(base), PROBE_MS, base);
  } catch (err) {
    if (err instanceof LocateError) throw err;
    throw new LocateError(`${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
  const { getAttribute } = await import('fs-xattr');
  let raw: Buffer;
  try {
    raw = await within(getAttribute(real, POOL_API_XATTR), PROBE_MS, real);
  } catch (err) {
    if (err instanceof LocateError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') throw new LocateError(`${real}: the vPool mounted there does not answer (${code}: its daemon is gone); start it again (vpoolfs mount …), which clears the stale mount`);
    throw await notOnVpool(file, `${real} has no ${POOL_API_XATTR} attribute: ${code}`);
  }
  const info = JSON.parse(raw.toString('utf8')) as PoolApiInfo;
  const inside = path.join(real, ...rest);
  let rel = path.relative(info.mountpoint, inside);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    const mine = await followerMount(inside, info);
    if (mine === undefined) throw await notOnVpool(file, `${inside} is outside ${info.mountpoint}`);
    rel = path.relative(mine, inside);
    // the owner's unix socket is on the owner's host: on another one, say where the API is instead of failing to dial
    if (socket === undefined && !(await lstat(info.socket).then((st) => st.isSocket(), () => false))) {
      throw new LocateError(`${file}: ${mine} follows vPool '${info.vpool}', whose owner serves the management API (socket ${info.socket}, mounted at ${info.mountpoint}), not on this host: run the command on the owner's host or give its socket (--socket), or use the user.vdisk.* xattrs here`);
    }
  }
  return { given: file, vpoolPath: '/' + rel.split(path.sep).filter(Boolean).join('/'), info, target: { socket: socket ?? info.socket } };
}

/**
 * What `user.vpool.api` answers at `file`, without requiring the path to be under the mountpoint it names: on a
 * follower's mount the owner answers it (its mountpoint, its API socket), which is what a vPool-wide question
 * (`router list`) needs. A LocateError when `file` is not on a vpoolfs mount.
 */
export async function poolApiOf(file: string): Promise<PoolApiInfo> {
  const { getAttribute } = await import('fs-xattr');
  try {
    return JSON.parse((await within(getAttribute(file, POOL_API_XATTR), PROBE_MS, file)).toString('utf8')) as PoolApiInfo;
  } catch (err) {
    if (err instanceof LocateError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') throw new LocateError(`${file}: the vPool mounted there does not answer (${code}: its daemon is gone); start it again (vpoolfs mount …), which clears the stale mount`);
    throw await notOnVpool(file, `no ${POOL_API_XATTR} attribute: ${code}`);
  }
}

/** The one vPool mounted here, for verbs given no path; a clear refusal when there are none or several. */
export async function onlyVpool(): Promise<string> {
  const pools = await mountedVpools();
  if (pools.length === 1) return pools[0];
  if (pools.length === 0) throw new LocateError('no vPool is mounted here (vpoolfs mount MOUNTPOINT); give the path of one');
  throw new LocateError(`several vPools are mounted (${pools.join(', ')}): give the path of one`);
}
