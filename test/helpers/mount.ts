/**
 * Real mounts for the FUSE and CLI tests. The daemon always runs in a CHILD process
 * (`node dist/tools/cli.js mount …`): a process must never make synchronous calls against a mount it
 * serves itself. startMount() waits for `mountpoint -q`; stop() sends SIGTERM, waits for the exit and
 * makes sure nothing is left mounted; kill9() leaves a stale mount behind on purpose.
 *
 * Without /dev/fuse the tests are skipped with a message, unless CI is set: then they fail loudly.
 *
 * VPOOLFS_TEST_FUSE_ENGINE=kernel|fuse-native passes `--fuse-engine` to every mount (npm test runs the
 * mount-based files once with the default engine, kernel, and once more with fuse-native).
 */
import test, { type ExecutionContext, type TestFn } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../tools/cli.js', import.meta.url));
export const HAS_FUSE = existsSync('/dev/fuse');

let warned = false;
/** `test` when mounts can run (or CI demands them), `test.skip` with a message otherwise. */
export function fuseTest(): TestFn {
  if (HAS_FUSE) return test;
  if (process.env.CI) {
    return ((title: string) =>
      test(title, (t) => {
        t.fail('/dev/fuse is missing and CI is set: the FUSE tests cannot run (give the container --device /dev/fuse --cap-add SYS_ADMIN)');
      })) as unknown as TestFn;
  }
  if (!warned) {
    warned = true;
    console.warn('SKIPPING the FUSE mount tests: /dev/fuse is missing (set CI=1 to make this a failure)');
  }
  return test.skip as unknown as TestFn;
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a bash command; never throws (look at `code`). */
export function sh(cmd: string, opts: { timeoutMs?: number; cwd?: string } = {}): Promise<ShResult> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', cmd], { maxBuffer: 64 * 2 ** 20, timeout: opts.timeoutMs ?? 240_000, cwd: opts.cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Runs a bash command and fails the test (with its output) unless it exits 0. Returns stdout. */
export async function ok(t: ExecutionContext, cmd: string, timeoutMs?: number): Promise<string> {
  const r = await sh(cmd, { timeoutMs });
  if (r.code !== 0) t.fail(`command failed (${r.code}): ${cmd}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export async function isMounted(mp: string): Promise<boolean> {
  return (await sh(`mountpoint -q ${q(mp)}`)).code === 0;
}

/** Shell-quotes one argument. */
/**
 * Shell lines for the start of a private mount namespace (`unshare -m`): detach the namespace's copies of the
 * host's FUSE mounts, loop-device filesystems and whatever lies under /tmp, /mnt and /var/lib/vpoolfs. A copy
 * holds its filesystem alive for as long as the namespace lives: another test's `umount` then succeeds on the
 * host while the filesystem stays (a loop ext4 "remounted" after a power cut comes back still shut down, without
 * its journal replay; a FUSE daemon's connection outlives its unmount).
 */
export const DETACH_HOST_MOUNTS = [
  'findmnt -rn -o TARGET,FSTYPE,SOURCE | while read -r target fstype source; do',
  '  case "$target" in /tmp/*|/mnt/*|/var/lib/vpoolfs/*) ;; *) case "$fstype:$source" in fuse*|*:/dev/loop*) ;; *) continue ;; esac ;; esac',
  `  umount -l "$(printf '%b' "$target")" 2>/dev/null || true`,
  'done',
].join('\n');

export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A temp directory removed at teardown (after every mount in it is gone). */
export async function tempRoot(t: ExecutionContext, prefix = 'vpoolfs-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(async () => {
    await sh(`for m in $(findmnt -rn -o TARGET | grep -F ${q(dir)}); do fusermount -uz "$m" 2>/dev/null || umount -l "$m"; done`);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

export interface MountOpts {
  mountpoint: string;
  state: string;
  /** Default file://<root>/backend (outside the state directory). */
  backend: string;
  extraArgs?: string[];
  env?: Record<string, string>;
  /** How long to wait for `mountpoint -q` (default 60 s). */
  readyMs?: number;
  /** A command the daemon runs under, e.g. `nsenter --net=/run/netns/X` (it must exec, not fork: pid and signals are the daemon's). */
  prefix?: string[];
}

export class MountHandle {
  readonly child: ChildProcess;
  readonly opts: MountOpts;
  private output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(opts: MountOpts) {
    this.opts = opts;
    const engine = process.env.VPOOLFS_TEST_FUSE_ENGINE;
    const engineArgs = engine && !(opts.extraArgs ?? []).includes('--fuse-engine') ? ['--fuse-engine', engine] : [];
    const args = [CLI, 'mount', opts.mountpoint, '--state', opts.state, '--backend', opts.backend, ...engineArgs, ...(opts.extraArgs ?? [])];
    const prefix = opts.prefix ?? [];
    this.child = spawn(prefix[0] ?? process.execPath, prefix.length > 0 ? [...prefix.slice(1), process.execPath, ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VPOOLFS_LOG_LEVEL: 'info', ...opts.env } });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }
  get mountpoint(): string {
    return this.opts.mountpoint;
  }
  /** Everything the daemon printed so far. */
  get log(): string {
    return this.output;
  }
  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** Path inside the mount. */
  p(...parts: string[]): string {
    return path.join(this.opts.mountpoint, ...parts);
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + (this.opts.readyMs ?? 60_000);
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`vpoolfs mount exited (${JSON.stringify(this.exitInfo)}) before it was ready:\n${this.output}`);
      // this daemon's own "ready" too: a stale mount left by a killed one also passes `mountpoint -q`
      if (logEntries(this.output, 'ready').length > 0 && (await isMounted(this.opts.mountpoint))) return;
      await sleep(50);
    }
    throw new Error(`vpoolfs mount not ready after ${this.opts.readyMs ?? 60_000} ms:\n${this.output}`);
  }

  /** SIGTERM, wait for the exit, make sure nothing stays mounted. Returns the exit code. */
  async stop(timeoutMs = 120_000): Promise<number | null> {
    if (this.alive) this.child.kill('SIGTERM');
    const res = await Promise.race([this.exited, sleep(timeoutMs, undefined, { ref: false })]);
    if (res === undefined) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    if (await isMounted(this.opts.mountpoint)) await sh(`fusermount -uz ${q(this.opts.mountpoint)} || umount -l ${q(this.opts.mountpoint)}`);
    return res === undefined ? null : res.code;
  }

  /** SIGKILL and wait for the exit; the stale mount stays (the next mount must clear it). */
  async kill9(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** The daemon's JSON log lines that have `message` (a string or a pattern) and every field in `fields`. */
export function logEntries(log: string, message: string | RegExp, fields: Record<string, unknown> = {}): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const msg = String(e.message);
    if (typeof message === 'string' ? msg !== message : !message.test(msg)) continue;
    if (Object.entries(fields).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v))) out.push(e);
  }
  return out;
}

/** Starts `vpoolfs mount` in a child process, waits until it is mounted, and stops it at teardown. */
export async function startMount(t: ExecutionContext, opts: MountOpts): Promise<MountHandle> {
  if (!HAS_FUSE) throw new Error('/dev/fuse is missing: cannot mount');
  const m = new MountHandle(opts);
  t.teardown(async () => {
    await m.stop(30_000);
  });
  try {
    await m.waitReady();
  } catch (err) {
    await m.stop(10_000);
    throw err;
  }
  return m;
}

/** A fresh layout under a temp root: <root>/mnt, <root>/state, backend file://<root>/backend. */
export async function freshLayout(t: ExecutionContext, name = 'vp'): Promise<{ root: string; mountpoint: string; state: string; backend: string; backendDir: string }> {
  const root = await tempRoot(t);
  const backendDir = path.join(root, 'backend');
  return { root, mountpoint: path.join(root, name), state: path.join(root, 'state'), backend: `file://${backendDir}`, backendDir };
}
