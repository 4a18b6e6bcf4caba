/**
 * A private etcd (Debian `etcd-server` 3.4, installed by tools/setup.sh) for the registry tests: one member on
 * free loopback ports, its data in a temp directory, started by the test and stopped by its PID at teardown.
 * `stop()` and `start()` again (same ports, same data) let a test take etcd away and bring it back.
 * etcd preallocates its WAL: an empty data directory takes about 120 MB of disk.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export class EtcdHandle {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  /** `host`: the address etcd listens on (loopback by default; a bridge's address for routers in network namespaces). */
  constructor(readonly dir: string, readonly clientPort: number, readonly peerPort: number, readonly host = '127.0.0.1') {}

  /** `etcd://127.0.0.1:PORT`, what `--registry` takes. */
  get url(): string {
    return `etcd://${this.host}:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** etcd's own log (for a failing test's message). */
  get log(): string {
    try {
      return readFileSync(path.join(this.dir, 'etcd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts etcd (again, on the same ports and data) and waits until /health says so. */
  async start(): Promise<void> {
    const peer = `http://${this.host}:${this.peerPort}`;
    const client = `http://${this.host}:${this.clientPort}`;
    const out = openSync(path.join(this.dir, 'stdout.log'), 'a');
    const child = spawn('etcd', [
      '--name', 'test', '--data-dir', path.join(this.dir, 'data'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`, '--initial-cluster-state', 'new',
      '--quota-backend-bytes', String(256 * 2 ** 20), '--logger', 'zap', '--log-outputs', path.join(this.dir, 'etcd.log'),
    ], { stdio: ['ignore', out, out] });
    closeSync(out);
    this.child = child;
    this.exited = new Promise((r) => child.on('exit', () => r()));
    let gone = false;
    void this.exited.then(() => (gone = true));
    for (;;) {
      if (gone) throw new Error(`etcd exited before it was healthy:\n${readFileSync(path.join(this.dir, 'stdout.log'), 'utf8')}\n${this.log}`);
      try {
        const res = await fetch(`${client}/health`);
        if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
  }

  /** Stops etcd by its PID (SIGTERM, then SIGKILL if it does not go) and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if ((await Promise.race([this.exited.then(() => true), sleep(10_000, false)])) === false) {
      child.kill('SIGKILL');
      await this.exited;
    }
    this.child = null;
  }
}

/** A private etcd for this test, stopped and deleted at teardown. */
export async function startEtcd(t: ExecutionContext, host = '127.0.0.1'): Promise<EtcdHandle> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-etcd-'));
  const e = new EtcdHandle(dir, await freePort(), await freePort(), host);
  t.teardown(async () => {
    await e.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await e.start();
  return e;
}
