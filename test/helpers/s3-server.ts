/**
 * A real S3 server (Ceph radosgw, tools/s3-server/start.sh) for one test file: useS3Server() registers a
 * `before` hook that starts it on free loopback ports in its own directory (installing the Debian packages
 * on first use) and an `after.always` hook that stops it by the PIDs its start script recorded.
 *
 * It never skips: when the server cannot start, every test of the file fails with the script's output.
 * The AWS credential variables are set in this process, so stores opened here and children spawned from
 * here (vpoolfs mount) use them.
 */
import test from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBlobStore } from '../../volume/backend/index.js';
import type { BlobStore } from '../../volume/backend/types.js';

const SCRIPTS = fileURLToPath(new URL('../../../tools/s3-server', import.meta.url));

export interface S3Server {
  endpoint: string;
  dir: string;
  /** An s3:// URL for `bucket` and `prefix` on this server (path-style, region us-east-1), plus extra query keys. */
  url(bucket: string, prefix?: string, extra?: Record<string, string>): string;
  /** The same URL through the other address radosgw listens on (`alsoOn`: a test bridge's, for network namespaces). */
  urlOn(host: string, bucket: string, prefix?: string): string;
  /** SIGKILLs radosgw (the mon and OSD keep the data): the backend is gone. */
  stopRgw(): Promise<void>;
  /** Starts radosgw again and waits until it answers. */
  startRgw(): Promise<void>;
  /** PID of the running radosgw, or undefined. */
  rgwPid(): number | undefined;
}

function run(script: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(SCRIPTS, script), ...args], { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(String(stdout));
    });
  });
}

/** A free TCP port on 127.0.0.1 such that port+1 is free too (the mon listens on both). */
async function freePortPair(): Promise<number> {
  const listen = (port: number) =>
    new Promise<net.Server | null>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(null));
      srv.listen(port, '127.0.0.1', () => resolve(srv));
    });
  for (let i = 0; i < 50; i++) {
    const a = await listen(0);
    if (a === null) continue;
    const port = (a.address() as net.AddressInfo).port;
    const b = port < 65535 ? await listen(port + 1) : null;
    await new Promise((r) => a.close(r));
    if (b !== null) {
      await new Promise((r) => b.close(r));
      return port;
    }
  }
  throw new Error('no free pair of ports on 127.0.0.1');
}

/**
 * `alsoOn`: another local address radosgw listens on as well (same port), read when the server starts — a
 * bridge made by an earlier `before` hook (helpers/netns.ts), so that routers in network namespaces reach it.
 */
export function useS3Server(name: string, opts: { alsoOn?: () => string } = {}): S3Server {
  const dir = path.join(os.tmpdir(), `vpoolfs-s3-${name}-${process.pid}`);
  const env: Record<string, string> = { S3_DIR: dir };
  let endpoint = '';
  const server: S3Server = {
    get endpoint() {
      return endpoint;
    },
    dir,
    url(bucket, prefix = '', extra = {}) {
      const q = new URLSearchParams({ endpoint, region: 'us-east-1', forcePathStyle: 'true', ...extra });
      return `s3://${bucket}/${prefix}?${q.toString()}`;
    },
    urlOn(host, bucket, prefix = '') {
      if (opts.alsoOn === undefined) throw new Error('useS3Server: urlOn needs the alsoOn option');
      return server.url(bucket, prefix, { endpoint: endpoint.replace('127.0.0.1', host) });
    },
    async stopRgw() {
      await run('stop.sh', ['rgw'], env, 30_000);
    },
    async startRgw() {
      await run('start.sh', ['rgw'], env, 120_000);
    },
    rgwPid() {
      const line = readFileSync(path.join(dir, 'pids'), 'utf8').split('\n').find((l) => l.endsWith(' rgw.a'));
      return line === undefined ? undefined : Number(line.split(' ')[0]);
    },
  };
  test.before(async () => {
    // if the worker dies before after.always runs (a timeout, a crash), do not leave daemons behind
    process.once('exit', () => {
      spawnSync('bash', [path.join(SCRIPTS, 'stop.sh')], { env: { ...process.env, ...env }, stdio: 'ignore', timeout: 30_000 });
    });
    env.S3_PORT = String(await freePortPair());
    env.MON_PORT = String(await freePortPair());
    if (opts.alsoOn !== undefined) env.S3_ALSO_ON = opts.alsoOn();
    // a cold machine installs the ceph packages first (about a minute and a half)
    const out = await run('start.sh', [], env, 600_000);
    const vars = Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    endpoint = vars.S3_ENDPOINT!;
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) process.env[k] = vars[k];
  });
  test.after.always(async () => {
    await run('stop.sh', [], env, 60_000);
  });
  return server;
}

/** Deletes every object of a store (a test's prefix), then closes a second handle used for it. */
export async function emptyStore(url: string): Promise<void> {
  const s: BlobStore = await openBlobStore(url);
  try {
    const keys = await s.list('');
    for (let i = 0; i < keys.length; i += 32) await Promise.all(keys.slice(i, i + 32).map((k) => s.delete(k)));
  } finally {
    await s.close();
  }
}
