/**
 * A private etcd (Debian `etcd-server` 3.4, installed by tools/setup.sh) for the registry tests: one member on
 * free loopback ports, its data in a temp directory, started by the test and stopped by its PID at teardown.
 * `stop()` and `start()` again (same ports, same data) let a test take etcd away and bring it back.
 * etcd preallocates its WAL: an empty data directory takes about 120 MB of disk.
 * Options (docs/cluster.md, "TLS and authentication"): `tls` serves clients over TLS only (certificates made by
 * ./etcd-tls.ts; `url` is then etcds://) and requires a client certificate signed by the test CA
 * (--client-cert-auth); `auth` adds the user root with a password and turns etcd's auth on (`etcdctl`, Debian
 * `etcd-client`): every call then needs the user.
 */
import type { ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTlsFiles, type TlsFiles } from './etcd-tls.js';

export interface EtcdOptions {
  /** TLS to clients, a client certificate required. */
  tls?: boolean;
  /** etcd's auth on, with the user root and this password. */
  auth?: { password: string };
}

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

  /** The certificates (with `tls`). */
  readonly tls: TlsFiles | null;
  private authOn = false;

  /** `host`: the address etcd listens on (loopback by default; a bridge's address for routers in network namespaces). */
  constructor(readonly dir: string, readonly clientPort: number, readonly peerPort: number, readonly host = '127.0.0.1', readonly opts: EtcdOptions = {}) {
    if (opts.tls === true) {
      const certs = path.join(dir, 'tls');
      mkdirSync(certs, { recursive: true });
      this.tls = makeTlsFiles(certs, host);
    } else this.tls = null;
  }

  /** `etcd://127.0.0.1:PORT` (`etcds://` with TLS), what `--registry` takes. */
  get url(): string {
    return `${this.tls === null ? 'etcd' : 'etcds'}://${this.host}:${this.clientPort}`;
  }

  /** The password file of the user root (with `auth`). */
  get passwordFile(): string | null {
    return this.opts.auth === undefined ? null : path.join(this.dir, 'root.password');
  }

  /** What a client gives besides the URL (registry/security.ts): the test CA and client certificate, the user root. */
  get security(): { ca?: string; cert?: string; key?: string; user?: string; passwordFile?: string } {
    return {
      ...(this.tls === null ? {} : { ca: this.tls.ca, cert: this.tls.clientCert, key: this.tls.clientKey }),
      ...(this.passwordFile === null ? {} : { user: 'root', passwordFile: this.passwordFile }),
    };
  }

  /** The same as flags (`vpoolfs mount`, `router list`, `takeover`, `move`). */
  get securityArgs(): string[] {
    const s = this.security;
    return [
      ...(s.ca === undefined ? [] : ['--registry-ca', s.ca, '--registry-cert', s.cert!, '--registry-key', s.key!]),
      ...(s.user === undefined ? [] : ['--registry-user', s.user, '--registry-password-file', s.passwordFile!]),
    ];
  }

  /** Runs etcdctl against this etcd (as root once auth is on); resolves with stdout, rejects with its stderr. */
  etcdctl(...args: string[]): Promise<string> {
    const t = this.tls;
    const flags = [
      '--endpoints', `${t === null ? 'http' : 'https'}://${this.host}:${this.clientPort}`,
      ...(t === null ? [] : ['--cacert', t.ca, '--cert', t.clientCert, '--key', t.clientKey]),
      ...(this.authOn ? ['--user', `root:${this.opts.auth!.password}`] : []),
    ];
    return new Promise((resolve, reject) => {
      execFile('etcdctl', [...flags, ...args], { env: { ...process.env, ETCDCTL_API: '3' } }, (err, stdout, stderr) => (err ? reject(new Error(`etcdctl ${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
    });
  }

  /** etcd's /health, over TLS with the client certificate when it has TLS. */
  private async healthy(): Promise<boolean> {
    const client = `http://${this.host}:${this.clientPort}`;
    try {
      if (this.tls === null) {
        const res = await fetch(`${client}/health`);
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      }
      const t = this.tls;
      const body = await new Promise<string>((resolve, reject) => {
        const req = https.get({ host: this.host, port: this.clientPort, path: '/health', ca: readFileSync(t.ca), cert: readFileSync(t.clientCert), key: readFileSync(t.clientKey), timeout: 2000 }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(res.statusCode === 200 ? text : ''));
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
      });
      return (JSON.parse(body || '{}') as { health?: string }).health === 'true';
    } catch {
      return false; // not listening yet
    }
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
    const client = `${this.tls === null ? 'http' : 'https'}://${this.host}:${this.clientPort}`;
    const tlsArgs = this.tls === null ? [] : ['--cert-file', this.tls.serverCert, '--key-file', this.tls.serverKey, '--trusted-ca-file', this.tls.ca, '--client-cert-auth'];
    const out = openSync(path.join(this.dir, 'stdout.log'), 'a');
    const child = spawn('etcd', [
      '--name', 'test', '--data-dir', path.join(this.dir, 'data'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`, '--initial-cluster-state', 'new',
      '--quota-backend-bytes', String(256 * 2 ** 20), '--logger', 'zap', '--log-outputs', path.join(this.dir, 'etcd.log'), ...tlsArgs,
    ], { stdio: ['ignore', out, out] });
    closeSync(out);
    this.child = child;
    this.exited = new Promise((r) => child.on('exit', () => r()));
    let gone = false;
    void this.exited.then(() => (gone = true));
    for (;;) {
      if (gone) throw new Error(`etcd exited before it was healthy:\n${readFileSync(path.join(this.dir, 'stdout.log'), 'utf8')}\n${this.log}`);
      if (await this.healthy()) break;
      await sleep(50);
    }
    if (this.opts.auth !== undefined && !this.authOn) {
      // the first start: the user root (etcd's auth needs it) with the password in a file, then auth on
      writeFileSync(this.passwordFile!, `${this.opts.auth.password}\n`, { mode: 0o600 });
      await this.etcdctl('user', 'add', 'root', `--new-user-password=${this.opts.auth.password}`);
      await this.etcdctl('auth', 'enable');
      this.authOn = true;
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
export async function startEtcd(t: ExecutionContext, host = '127.0.0.1', opts: EtcdOptions = {}): Promise<EtcdHandle> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-etcd-'));
  const e = new EtcdHandle(dir, await freePort(), await freePort(), host, opts);
  t.teardown(async () => {
    await e.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await e.start();
  return e;
}
