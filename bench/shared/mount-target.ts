/**
 * A FUSE server run as a child process for the benchmarks, as a `Target`: a directory that exists between
 * start() and stop(). `vpoolfsTarget` is the vpoolfs CLI's mount (DTL none, file:// backend); the mount
 * benchmark's references (mount/targets.ts) are other servers started the same way.
 *
 * A child's output goes to a log file, never to a pipe: a FUSE server blocked on a full pipe would stall
 * the mount under test. Children are stopped by their PID (SIGTERM, then SIGKILL after a grace), and
 * whatever is still mounted is unmounted with `fusermount -uz`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Target {
  name: string;
  /** Directory fio writes its file in (valid after start()). */
  dir: string;
  start(): Promise<void>;
  /** Idempotent; never throws. */
  stop(): Promise<void>;
  /** The child's stdout/stderr, if the target has a child. */
  log?: string;
  /** After stop(): how a child process ended (`exit 0` is a clean stop), and how long stopping took. */
  stopped?: { how: string; ms: number };
  /** The process serving the target (its CPU time is measured per job), if any; valid after start(). */
  pid?: number;
}

/** dist/ of this build (this file is dist/bench/shared/mount-target.js). */
const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Is `dir` a live mountpoint (`mountpoint -q`)? */
export function isMountpoint(dir: string): boolean {
  return spawnSync('mountpoint', ['-q', dir]).status === 0;
}

/** In the mount table? (Unlike `mountpoint -q`, also true for a dead server's stale mount.) */
function isMounted(dir: string): boolean {
  const unescape = (f: string): string => f.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => unescape(l.split(' ')[1] ?? '') === dir);
}

/** The last lines of a child's log, after its first lines that say "error" (a usage error is followed by the whole help). */
function tail(file: string, n = 15): string {
  try {
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    const errors = lines.filter((l) => /error/i.test(l)).slice(0, 3);
    const last = lines.slice(errors.length ? -3 : -n).filter((l) => !errors.includes(l));
    return [...errors, ...(errors.length ? ['...'] : []), ...last].join('\n');
  } catch {
    return '';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How to start a FUSE server: the program and its arguments for a mount point. */
export interface Command {
  program: string;
  args: string[];
}

/** A FUSE server run as a child process; ready when `mountpoint -q` says so. */
export class MountTarget implements Target {
  readonly dir: string;
  private child: ChildProcess | undefined;
  private exited = false;
  private exitHow = '';
  readonly log: string;
  stopped?: { how: string; ms: number };
  pid?: number;

  /**
   * `command` may throw (e.g. the C passthrough cannot be built): start() then fails with that reason.
   */
  constructor(readonly name: string, root: string, private readonly command: (mnt: string) => Command,
    private readonly stopGraceMs: number) {
    this.dir = path.join(root, 'mnt');
    this.log = path.join(root, `${name}.log`);
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const { program, args } = this.command(this.dir);
    const out = fs.openSync(this.log, 'a');
    try {
      this.child = spawn(program, args, { stdio: ['ignore', out, out] });
    } finally {
      fs.closeSync(out);
    }
    this.pid = this.child.pid;
    this.child.on('error', (e) => {
      this.exited = true;
      this.exitHow = `spawn error ${e.message}`;
    });
    this.child.on('exit', (code, sig) => {
      this.exited = true;
      this.exitHow = sig ? `signal ${sig}` : `exit ${code}`;
    });
    const deadline = Date.now() + 60_000;
    while (!isMountpoint(this.dir)) {
      if (this.exited) throw new Error(`${this.name} exited before mounting; log ${this.log}:\n${tail(this.log)}`);
      if (Date.now() > deadline) throw new Error(`${this.name} not mounted after 60 s; log ${this.log}:\n${tail(this.log)}`);
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child?.pid !== undefined && !this.exited) {
      const t0 = Date.now();
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* ended meanwhile (e.g. a terminal's Ctrl-C reached it too) */ }
      const deadline = Date.now() + this.stopGraceMs;
      while (!this.exited && Date.now() < deadline) await sleep(100);
      if (!this.exited) {
        process.stderr.write(`bench: ${this.name} (pid ${child.pid}) still running after SIGTERM, sending SIGKILL\n`);
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
        while (!this.exited) await sleep(50);
      }
      this.stopped = { how: this.exitHow, ms: Date.now() - t0 };
      if (this.exitHow !== 'exit 0') process.stderr.write(`bench: ${this.name} ended with ${this.exitHow}; log ${this.log}:\n${tail(this.log)}\n`);
    }
    if (isMounted(this.dir)) spawnSync('fusermount', ['-uz', this.dir]);
  }
}

/** This build's CLI. */
export const DEFAULT_CLI = path.join(distDir, 'tools', 'cli.js');

/** The vpoolfs CLI's mount: DTL none, file:// backend, uploads running (the defaults otherwise). */
export function vpoolfsTarget(name: string, root: string, cli: string, extra: string[]): Target {
  const sub = path.join(root, name);
  return new MountTarget(name, sub, (mnt) => {
    if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: the vpoolfs CLI is not built (yet)`);
    return {
      program: process.execPath,
      args: [cli, 'mount', mnt, '--vpool', `bench-${name}`, '--state', path.join(sub, 'state'),
        '--backend', `file://${path.join(sub, 'backend')}`, '--dtl', 'none', ...extra],
    };
  },
  // A clean stop ships the whole write cache to the backend first.
  180_000);
}
