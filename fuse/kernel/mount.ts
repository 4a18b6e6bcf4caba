/**
 * The kernel engine's mount (`--fuse-engine kernel`, the default): opens /dev/fuse, mounts it with
 * mount(8) — `mount -i -n -t fuse.vpoolfs -o fd=3,… vpoolfs:<vpool> MNT` with the descriptor as the child's
 * fd 3 (-i: no /sbin/mount.fuse helper, which would take the source for a command) —, starts the session
 * and waits until INIT is answered. Unmount runs `umount MNT` asynchronously (it stats the mountpoint, so
 * the session keeps answering meanwhile), lazily (`umount -l`) when files are still open. Mounting needs
 * root: mount(2) of a FUSE device is privileged, and fusermount's fd passing needs SCM_RIGHTS, which plain
 * Node cannot receive.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from '../../util/log.js';
import type { MountHandlers } from '../handlers.js';
import type { Change, EngineOptions, Mounted } from '../mount-types.js';
import { MAX_WRITE } from './protocol.js';
import { Session } from './session.js';

const log = logger('fuse');

/** How long the kernel may take to send INIT after mount(2). */
const INIT_TIMEOUT_MS = 30_000;
/** How long the readers may take to see the end of the device after an unmount. */
const ENDED_TIMEOUT_MS = 10_000;

/** Runs a command asynchronously (the session must keep answering meanwhile); never throws. */
/** The FUSE connection number of the mount at `mp` (the minor of its device, from /proc/self/mountinfo). */
function connectionOf(mp: string): number | undefined {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] === mp && f[2]?.startsWith('0:')) return Number(f[2].slice(2));
  }
  return undefined;
}

/** Aborts FUSE connection `id` through fusectl (mounted at /sys/fs/fuse/connections when it is not yet). */
function abortConnection(id: number | undefined, mp: string): void {
  if (id === undefined) return;
  const file = `/sys/fs/fuse/connections/${id}/abort`;
  try {
    if (!fs.existsSync(file)) spawnSync('mount', ['-t', 'fusectl', 'fusectl', '/sys/fs/fuse/connections']);
    fs.writeFileSync(file, '1');
    log.info('aborted the FUSE connection: the files still open see ENOTCONN', { mountpoint: mp, connection: id });
  } catch (err) {
    log.warn('could not abort the FUSE connection; the exit may wait for the files still open', { mountpoint: mp, connection: id, error: (err as Error).message });
  }
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stderr: String(stderr).trim() || (err ? err.message : '') });
    });
  });
}

/** mount(8) with /dev/fuse as its fd 3. */
function mountFd(fd: number, options: string, source: string, mountpoint: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('mount', ['-i', '-n', '-t', 'fuse.vpoolfs', '-o', options, source, mountpoint], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err: Error) => resolve({ code: 127, stderr: err.message }));
    child.on('exit', (code: number | null) => resolve({ code: code ?? 1, stderr: stderr.trim() }));
  });
}

export async function mountKernel(opts: EngineOptions, h: MountHandlers): Promise<Mounted> {
  const mp = opts.mountpoint;
  if (process.getuid?.() !== 0) {
    throw new Error('the kernel FUSE engine mounts with mount(8) and needs root; run as root, or use --fuse-engine fuse-native');
  }
  const options = `fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,nosuid,nodev,max_read=${MAX_WRITE}`;
  const fd = fs.openSync('/dev/fuse', 'r+');
  // READs answered in the reader threads (fast-read.ts) would bypass the metrics observer's counts and
  // latencies: with metrics on, every READ goes to the main thread, where the observer sees it
  const session = new Session(fd, h.ops, opts.debug ?? false, opts.observer === undefined ? h.fds : undefined);
  const mounted = await mountFd(fd, options, `vpoolfs:${opts.vpool.name}`, mp);
  if (mounted.code !== 0) {
    fs.closeSync(fd);
    throw new Error(`mount of ${mp} failed (mount exited ${mounted.code}): ${mounted.stderr}`);
  }
  session.start();
  const init = await Promise.race([session.initialized, sleep(INIT_TIMEOUT_MS, undefined, { ref: false })]);
  if (init === undefined) {
    await run('umount', ['-l', mp]);
    throw new Error(`the kernel sent no FUSE INIT within ${INIT_TIMEOUT_MS} ms after mounting ${mp}`);
  }
  log.info('mounted', { mountpoint: mp, vpool: opts.vpool.name, engine: 'kernel', options, init });
  const connection = connectionOf(mp);

  let unmounting = false;
  let unmounted: Promise<void> | undefined;
  void session.ended.then((why) => {
    log.info('fuse kernel session stats', { mountpoint: mp, ...session.stats() });
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    if (!unmounting) {
      log.warn('the mount went away without vpoolfs unmounting it (umount from outside, or an abort)', { mountpoint: mp, reason: why });
      opts.onLost?.(why);
    }
  });

  async function unmount(): Promise<void> {
    unmounting = true;
    const r = await run('umount', [mp]);
    if (r.code !== 0) {
      if (/busy/i.test(r.stderr)) {
        // files still open: detach now, they see errors once the daemon exits (like fusermount -uz)
        const lazy = await run('umount', ['-l', mp]);
        if (lazy.code !== 0) throw new Error(`umount -l ${mp} failed: ${lazy.stderr}`);
        log.warn('files were still open: unmounted lazily', { mountpoint: mp });
        log.info('fuse kernel session stats', { mountpoint: mp, ...session.stats() });
        // the open files keep the connection up, and the readers blocked in read(2) on it would keep this
        // process from ever exiting (a worker blocked in a system call cannot be terminated): abort it, so that
        // they see ENODEV and those files ENOTCONN, as after a crash
        abortConnection(connection, mp);
        session.unref();
        log.info('unmounted', { mountpoint: mp, vpool: opts.vpool.name, engine: 'kernel', lazy: true });
        return;
      }
      if (!/not mounted/i.test(r.stderr)) throw new Error(`umount ${mp} failed: ${r.stderr}`);
    }
    // the readers see ENODEV at once after an unmount; never let a stuck one hold the stop up
    const ended = await Promise.race([session.ended, sleep(ENDED_TIMEOUT_MS, undefined, { ref: false })]);
    if (ended === undefined) {
      log.warn('unmounted, but the FUSE readers have not stopped; going on without them', { mountpoint: mp, waitedMs: ENDED_TIMEOUT_MS });
      session.unref();
    }
    log.info('unmounted', { mountpoint: mp, vpool: opts.vpool.name, engine: 'kernel' });
  }

  return {
    mountpoint: mp,
    engine: 'kernel',
    options,
    fds: h.fds,
    fence: () => h.fence.close(),
    async changed(path: string, how: Change) {
      const id = session.nodes.idOf(path);
      // a removed vDisk: its node answers ENOENT from now on, and the kernel's cached attributes go, so the
      // next stat asks (and hears ENOENT) instead of using them for up to a second
      if (how === 'gone') session.nodes.detach(path);
      if (id !== undefined) await session.invalidateLater(id);
    },
    unmount() {
      unmounted ??= unmount();
      return unmounted;
    },
  };
}
