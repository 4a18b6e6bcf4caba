/**
 * A real DTL server in a child process (`node dist/tools/cli.js dtl-server`), for the tests that kill
 * or restart it. start() waits for its "listening HOST:PORT" line; kill9() and stop() wait for the exit.
 * Every server started here is killed at teardown.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './mount.js';

export class DtlServerProcess {
  child!: ChildProcess;
  address = '';
  output = '';
  private exited!: Promise<void>;

  /** `prefix`: a command the server runs under (`nsenter --net=…`, helpers/netns.ts; it must exec, not fork). */
  constructor(readonly dir: string, private listen = '127.0.0.1:0', private readonly extra: string[] = [], private readonly prefix: string[] = []) {}

  /** Starts the server (again: on the same address as before, so clients find it). */
  async start(): Promise<this> {
    if (this.address !== '') this.listen = this.address;
    const args = [CLI, 'dtl-server', '--listen', this.listen, '--dir', this.dir, ...this.extra];
    this.child = spawn(this.prefix[0] ?? process.execPath, this.prefix.length > 0 ? [...this.prefix.slice(1), process.execPath, ...args] : args, {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VPOOLFS_LOG_LEVEL: 'info' },
    });
    this.exited = new Promise((resolve) => this.child.on('exit', () => resolve()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.address = await new Promise<string>((resolve, reject) => {
      let out = '';
      this.child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        this.output += d.toString();
        const m = /listening (\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      this.child.on('exit', (code) => reject(new Error(`dtl-server exited (${code}) before listening:\n${this.output}`)));
    });
    return this;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGSTOP / SIGCONT: a server that is alive but does not answer. */
  pause(): void {
    this.child.kill('SIGSTOP');
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  async kill9(): Promise<void> {
    if (this.alive) this.child.kill('SIGCONT');
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.alive) this.child.kill('SIGTERM');
    await this.exited;
  }
}

/** Starts a DTL server process on loopback, killed at teardown. */
export async function startDtlServer(t: ExecutionContext, dir: string, extra: string[] = []): Promise<DtlServerProcess> {
  const s = new DtlServerProcess(dir, '127.0.0.1:0', extra);
  t.teardown(() => s.kill9());
  return s.start();
}
