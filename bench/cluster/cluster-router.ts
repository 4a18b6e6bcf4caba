/**
 * A `vpoolfs mount --registry` router as a child process for the cluster benches (bench/cluster/cluster.ts,
 * bench/cluster/scale-cluster.ts): vPool `pool` on the file:// backend `<root>/backend`, its state and mountpoint under
 * `<root>`, a registry lease of `lease` seconds, the backend claim's lease long (60 s: every takeover measured is
 * the registry's), no schedules. Its log is kept; `until()` waits for a log line. `opts.vpool` names another
 * vPool (and backend `<root>/backend-<vpool>`), `opts.config` adds config keys (bench/cluster/cluster-history.ts: tiny
 * SCOs and TLogs, checkpoints on or off).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../tools/cli.js', import.meta.url));

export class Router {
  readonly child: ChildProcess;
  out = '';
  readonly mountpoint: string;
  /** The file:// backend's directory. */
  readonly backendDir: string;
  /** Router `name` with its state and mountpoint under `root`, on the file:// backend `root`/backend. */
  constructor(root: string, readonly name: string, etcd: string, lease: number, opts: { vpool?: string; config?: Record<string, unknown> } = {}) {
    this.mountpoint = path.join(root, `${name}-mnt`);
    fs.mkdirSync(this.mountpoint, { recursive: true });
    const cfg = path.join(root, `${name}.json`);
    fs.writeFileSync(cfg, JSON.stringify({ registryLeaseSeconds: lease, claimLeaseMs: 60_000, autoMove: false /* forwarded I/O is measured: the vPool must not move to the follower doing it */, schedule: { snapshot: null, retention: null, scrub: null }, ...opts.config }));
    const vpool = opts.vpool ?? 'pool';
    this.backendDir = path.join(root, vpool === 'pool' ? 'backend' : `backend-${vpool}`);
    this.child = spawn(process.execPath, [CLI, 'mount', this.mountpoint, '--vpool', vpool, '--router', name, '--state', path.join(root, `${name}-state`),
      '--backend', `file://${this.backendDir}`, '--registry', etcd, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VPOOLFS_LOG_LEVEL: 'info' } });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  private parsed: Array<Record<string, unknown>> = [];
  private parsedUpTo = 0;

  /** The first log entry whose message matches, or undefined (lines are parsed once: logs grow with the vDisks). */
  entry(message: RegExp, after = 0): Record<string, unknown> | undefined {
    const end = this.out.lastIndexOf('\n') + 1;
    if (end > this.parsedUpTo) {
      for (const line of this.out.slice(this.parsedUpTo, end).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          this.parsed.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log entry
        }
      }
      this.parsedUpTo = end;
    }
    return this.parsed.find((e) => message.test(String(e.message)) && Date.parse(String(e.timestamp)) >= after);
  }

  /** Waits for a log entry (at or after `after`) matching `message`; throws after `timeoutMs` or if the router exits. */
  async until(message: RegExp, after = 0, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.entry(message, after);
      if (e !== undefined) return e;
      if (this.child.exitCode !== null || Date.now() > deadline) throw new Error(`router ${this.name}: no ${message} (exit ${this.child.exitCode}):\n${this.out.slice(-3000)}`);
      await sleep(50);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill(signal);
      await exited;
    }
    await spawnWait('umount', ['-l', this.mountpoint]);
  }
}

function spawnWait(cmd: string, argv: string[]): Promise<number | null> {
  return new Promise((resolve) => spawn(cmd, argv, { stdio: 'ignore' }).on('exit', resolve));
}

/** Waits until router `name`'s vDisk records in the registry all say nothing is unshipped. */
export async function allClean(registry: string, name: string): Promise<void> {
  for (;;) {
    const out = await new Promise<string>((resolve) => {
      let text = '';
      const c = spawn(process.execPath, [CLI, 'router', 'list', '--registry', registry, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
      c.stdout.on('data', (d: Buffer) => (text += d.toString()));
      c.on('exit', () => resolve(text));
    });
    try {
      const row = (JSON.parse(out) as Array<{ name: string; vdisks: Array<{ dtl: { dirty: boolean } | null }> }>).find((r) => r.name === name);
      if (row !== undefined && row.vdisks.length > 0 && row.vdisks.every((d) => d.dtl?.dirty === false)) return;
    } catch {
      // not answering yet: try again
    }
    await sleep(250);
  }
}

