/**
 * Power cuts for tests: a small ext4 filesystem in a loop device that a test can "cut" the way fstests
 * simulates a power failure.
 *
 *   LoopFs.create()  a sparse image file under the test's temp root, `mkfs.ext4 -q`, `losetup -f --show`,
 *                    `mount -o commit=300` (see below)
 *   cut()            `xfs_io -x -c shutdown MOUNTPOINT` — the filesystem "going down" ioctl WITHOUT flushing
 *                    the journal or the page cache (no `-f`; ext4 implements the ioctl). From that instant every
 *                    read, write and fsync on it fails with EIO; whatever was not fsynced is never written.
 *   remount()        `umount` + `mount`: the journal replays to its last commit, so the filesystem holds what
 *                    was fsynced (and whatever the kernel happened to write back before the cut), nothing else.
 *
 * The processes that had the filesystem open must be dead (kill -9) before remount(): that is the caller's
 * business (it knows its daemons). Teardown always unmounts the filesystem and detaches the loop device, even
 * when the test failed half way.
 *
 * `commit=300`: ext4 otherwise commits its journal every 5 s, and metadata that reached a commit (a file's
 * creation, a rename) survives the cut though nothing fsynced it. With 300 s only an fsync (or a sync) commits,
 * so a missing fsync shows up every time instead of only when the cut beats the timer.
 *
 * Without root, /dev/loop-control, xfs_io, mkfs.ext4 or losetup the power-cut tests are skipped with a
 * message, unless CI is set: then they fail loudly (like fuseTest() in mount.ts).
 */
import test, { type ExecutionContext, type TestFn } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HAS_FUSE, q, sh } from './mount.js';

/** Why power-cut tests cannot run here ('' when they can). */
function missing(needFuse: boolean): string {
  const why: string[] = [];
  if (process.getuid?.() !== 0) why.push('not root (loop devices and mount need it)');
  if (!existsSync('/dev/loop-control')) why.push('/dev/loop-control is missing (no loop devices)');
  for (const tool of ['xfs_io', 'mkfs.ext4', 'losetup']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      why.push(`${tool} is missing${tool === 'xfs_io' ? ' (Debian xfsprogs; tools/setup.sh installs it)' : ''}`);
    }
  }
  if (needFuse && !HAS_FUSE) why.push('/dev/fuse is missing');
  return why.join('; ');
}

const warned = new Set<string>();
/** `test` when power cuts can run (or CI demands them), `test.skip` with a message otherwise. */
export function powercutTest(opts: { fuse?: boolean } = {}): TestFn {
  const why = missing(opts.fuse ?? false);
  if (why === '') return test;
  if (process.env.CI) {
    return ((title: string) =>
      test(title, (t) => {
        t.fail(`the power-cut tests cannot run and CI is set: ${why} (give the container --privileged, or loop devices and /dev/fuse, and run tools/setup.sh)`);
      })) as unknown as TestFn;
  }
  if (!warned.has(why)) {
    warned.add(why);
    console.warn(`SKIPPING the power-cut tests: ${why} (set CI=1 to make this a failure)`);
  }
  return test.skip as unknown as TestFn;
}

/** Runs a command; throws with its output unless it exits 0. */
async function must(cmd: string, timeoutMs = 60_000): Promise<string> {
  const r = await sh(cmd, { timeoutMs });
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${cmd}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

export class LoopFs {
  /** How many times this filesystem was cut. */
  cuts = 0;
  private mounted = false;
  private detached = false;

  private constructor(readonly image: string, readonly dev: string, readonly dir: string) {}

  /**
   * A fresh ext4 of `sizeMiB` (sparse) in a loop device, mounted at `<root>/<name>`; unmounted and detached at
   * teardown. Register it after tempRoot() (teardowns run last-registered first: the fs goes before the root).
   */
  static async create(t: ExecutionContext, root: string, name = 'lfs', sizeMiB = 1024): Promise<LoopFs> {
    const image = path.join(root, `${name}.img`);
    const dir = path.join(root, name);
    const fh = await open(image, 'w');
    await fh.truncate(sizeMiB * 2 ** 20);
    await fh.close();
    await must(`mkfs.ext4 -q -F ${q(image)}`);
    const dev = (await must(`losetup -f --show ${q(image)}`)).trim();
    const fs = new LoopFs(image, dev, dir);
    t.teardown(() => fs.destroy());
    await mkdir(dir, { recursive: true });
    await fs.mount();
    return fs;
  }

  /** A path inside the filesystem. */
  p(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /**
   * The power cut: shuts the filesystem down without flushing anything. Checks that it is down (creating a
   * file fails) so that a test never believes in a cut that did not happen.
   */
  async cut(): Promise<void> {
    await must(`xfs_io -x -c shutdown ${q(this.dir)}`);
    this.cuts++;
    const probe = await sh(`: > ${q(path.join(this.dir, `.after-cut-${this.cuts}`))}`);
    if (probe.code === 0) throw new Error(`xfs_io shutdown of ${this.dir} did not take: a file could still be created on it`);
  }

  /**
   * After a cut, once every process that used it is dead: unmount and mount again (the journal replays to
   * its last commit). Waits a little for the kernel to drop its last references (a killed process's open
   * files are closed asynchronously), then fails with what still holds it.
   */
  async remount(): Promise<void> {
    await this.unmount();
    await this.mount();
    // a copy of the mount in another mount namespace (`unshare -m` made while it was mounted) keeps the
    // superblock alive: `umount` succeeds, `mount` takes the old superblock back, still shut down, with no
    // journal replay; a test would then see ENOENT/EIO from a state disk that was never restarted
    const probe = await sh(`: > ${q(path.join(this.dir, '.after-remount'))}`);
    if (probe.code !== 0) {
      const holders = await sh(`me=$(readlink /proc/self/ns/mnt); for f in /proc/[0-9]*/mountinfo; do p=\${f#/proc/}; p=\${p%/mountinfo}; [ "$(readlink /proc/$p/ns/mnt 2>/dev/null)" != "$me" ] && grep -q ${q(` ${this.dev} `)} $f 2>/dev/null && echo "pid $p: $(tr '\\0' ' ' < /proc/$p/cmdline | cut -c1-200)"; done | head -5`);
      throw new Error(`the loop filesystem ${this.dir} is still shut down after umount + mount: another mount namespace holds a copy of it (tests that unshare -m must detach the host's mounts, DETACH_HOST_MOUNTS in helpers/mount.ts)\n${probe.stderr}${holders.stdout}`);
    }
  }

  private async mount(): Promise<void> {
    await must(`mount -t ext4 -o commit=300 ${q(this.dev)} ${q(this.dir)}`);
    this.mounted = true;
  }

  private async unmount(): Promise<void> {
    if (!this.mounted) return;
    let last = '';
    for (let i = 0; i < 100; i++) {
      const r = await sh(`umount ${q(this.dir)}`);
      if (r.code === 0) {
        this.mounted = false;
        return;
      }
      last = r.stderr;
      await sleep(100);
    }
    const who = await sh(`fuser -vm ${q(this.dir)} 2>&1 || true`);
    throw new Error(`cannot unmount the loop filesystem ${this.dir}: ${last}\n${who.stdout}`);
  }

  /** Teardown: unmount (lazily if it is still busy), detach the loop device, remove the image. */
  async destroy(): Promise<void> {
    if (this.detached) return;
    if (this.mounted) {
      try {
        await this.unmount();
      } catch {
        await sh(`umount -l ${q(this.dir)}`);
        this.mounted = false;
      }
    }
    this.detached = true;
    await sh(`losetup -d ${q(this.dev)}`);
    await rm(this.image, { force: true });
  }
}
