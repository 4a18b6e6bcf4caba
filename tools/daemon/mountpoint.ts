/**
 * Checks before a mount: /dev/fuse is there, the mountpoint is free. A stale FUSE mount left by a crash
 * (stat fails with ENOTCONN, "Transport endpoint is not connected") is cleared with `umount -l` as root
 * (either engine's mount; the kernel engine's is not a fusermount mount), `fusermount -uz` otherwise;
 * a live mount is refused (busy). No synchronous call touches the mountpoint: a hung mount must not hang us.
 */
import { execFile } from 'node:child_process';
import { access, constants, mkdir, readFile, realpath, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { logger } from '../../util/log.js';

const log = logger('cli');
const run = promisify(execFile);

export class MountpointError extends Error {}

/** Mountpoints listed in /proc/self/mountinfo (field 5, octal escapes decoded). */
export async function mountedPaths(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4) out.add(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/**
 * stat() then statfs() of `p`, giving up after `ms` (a hung FUSE daemon never answers). The statfs is what
 * finds a dead daemon's mount: the kernel answers a stat of its root from cached attributes for a while
 * after the daemon is gone, but every statfs goes to the daemon (ENOTCONN once its connection is gone).
 */
async function statWithin(p: string, ms: number): Promise<{ ok: true; dir: boolean } | { ok: false; code: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ ok: false; code: string }>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, code: 'ETIMEDOUT' }), ms);
    timer.unref();
  });
  const probe = stat(p).then(
    (st) => statfs(p).then(() => ({ ok: true as const, dir: st.isDirectory() })),
  ).catch((err: NodeJS.ErrnoException) => ({ ok: false as const, code: err.code ?? 'EIO' }));
  const res = await Promise.race([probe, timeout]);
  clearTimeout(timer);
  return res;
}

export async function checkDevFuse(): Promise<void> {
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch (err) {
    throw new MountpointError(`/dev/fuse is not usable (${(err as NodeJS.ErrnoException).code}): load the fuse module (modprobe fuse), or give the container the device (--device /dev/fuse --cap-add SYS_ADMIN)`);
  }
}

/**
 * Makes `mountpoint` ready to mount on: clears a stale mount, refuses a live one, creates the directory.
 * Returns the canonical path (symlinks in the parent resolved, as /proc/self/mountinfo shows it).
 */
export async function prepareMountpoint(mountpoint: string): Promise<string> {
  await checkDevFuse();
  const parent = path.dirname(mountpoint);
  const mp = path.join(await realpath(parent).catch(() => parent), path.basename(mountpoint));
  await prepare(mp);
  return mp;
}

async function prepare(mp: string): Promise<void> {
  const probe = await statWithin(mp, 5000);
  const mounted = (await mountedPaths()).has(mp);
  if (!probe.ok && (probe.code === 'ENOTCONN' || probe.code === 'ECONNABORTED')) {
    log.warn('clearing a stale mount left by a crash', { mountpoint: mp });
    await unmountLazy(mp);
    return prepareAfterClear(mp);
  }
  if (!probe.ok && probe.code === 'ETIMEDOUT') throw new MountpointError(`${mp}: something is mounted there and does not answer; unmount it first (fusermount -uz ${mp})`);
  if (mounted) throw new MountpointError(`${mp}: busy, something is mounted there already (see: findmnt ${mp}); unmount it first`);
  if (!probe.ok && probe.code === 'ENOENT') {
    await mkdir(mp, { recursive: true });
    return;
  }
  if (!probe.ok) throw new MountpointError(`${mp}: cannot use it as a mountpoint (${probe.code})`);
  if (!probe.dir) throw new MountpointError(`${mp}: not a directory`);
}

async function prepareAfterClear(mp: string): Promise<void> {
  const probe = await statWithin(mp, 5000);
  if (!probe.ok) throw new MountpointError(`${mp}: still unusable after clearing a stale mount (${probe.code})`);
  if ((await mountedPaths()).has(mp)) throw new MountpointError(`${mp}: busy, something is mounted there already`);
}

/** Lazy unmount: `umount -l` first as root (works for any FUSE mount), `fusermount -uz` first otherwise; then the other. */
export async function unmountLazy(mp: string): Promise<void> {
  const tries: [string, string[]][] = [['umount', ['-l', mp]], ['fusermount', ['-uz', mp]]];
  if (process.getuid?.() !== 0) tries.reverse();
  try {
    await run(...tries[0]);
  } catch (err) {
    log.debug(`${tries[0][0]} failed, trying ${tries[1][0]}`, { mountpoint: mp, error: (err as Error).message });
    try {
      await run(...tries[1]);
    } catch (err2) {
      throw new MountpointError(`${mp}: cannot clear the stale mount: ${(err2 as Error).message.trim()}`);
    }
  }
}
