/**
 * Routers with a registry for the registry-* tests: one private etcd (./etcd.ts), one file:// backend, and
 * `vpoolfs mount --registry` daemons, each with its own state directory and mountpoint, short leases from a
 * config file (registry lease 2 s; the backend claim's lease long, 60 s, so that every takeover the tests see
 * is the registry's doing, not the backend claim's expiry; and no automatic move — a test that wants one says
 * `autoMove: true` — so that I/O through a follower stays forwarded however long a test runs). `routers()` runs
 * `vpoolfs router list --json`.
 */
import type { ExecutionContext } from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startEtcd, type EtcdHandle, type EtcdOptions } from './etcd.js';
import { CLI, MountHandle, q, sh, tempRoot, type MountOpts } from './mount.js';
import { until } from './until.js';

export interface RouterRow {
  name: string;
  state: string;
  role: string | null;
  vpool: string | null;
  address: string | null;
  host: string | null;
  pid: number | null;
  failureDomain: string | null;
  vpools: Array<{ vpool: string; tag: number }>;
  vdisks: Array<{ vpool: string; id: string; path: string | null; tag: number }>;
}

export interface Cluster {
  root: string;
  etcd: EtcdHandle;
  backend: string;
  /** Mount options for router `name` (failure domain `fd-<name>`). */
  router(name: string, extra?: string[], config?: Record<string, unknown>): MountOpts;
  /** `vpoolfs router list --json` (fails the test if it fails). */
  routers(): Promise<RouterRow[]>;
  /** `vpoolfs router list` as text. */
  routerTable(): Promise<string>;
}

/**
 * `backend` gives the backend URL (default: file://<root>/backend); `etcdHost` where etcd listens (default loopback);
 * `etcdOpts` TLS and auth for etcd (./etcd.ts): the routers and `router list` then get its CA, client
 * certificate and user as flags.
 */
export async function cluster(t: ExecutionContext, backendOf?: (root: string) => string, etcdHost?: string, etcdOpts?: EtcdOptions): Promise<Cluster> {
  const root = await tempRoot(t, 'vpoolfs-registry-');
  const etcd = await startEtcd(t, etcdHost, etcdOpts);
  const sec = etcd.securityArgs.map(q).join(' ');
  const backend = backendOf?.(root) ?? `file://${path.join(root, 'backend')}`;
  const list = async (json: boolean): Promise<string> => {
    const r = await sh(`node ${q(CLI)} router list --registry ${q(etcd.url)} ${sec}${json ? ' --json' : ''}`);
    if (r.code !== 0) t.fail(`router list failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };
  return {
    root, etcd, backend,
    router(name, extra = [], config = {}) {
      const mountpoint = path.join(root, `${name}-mnt`);
      try {
        mkdirSync(mountpoint, { recursive: true });
      } catch (err) {
        // a stale mount left by a kill -9 (ENOTCONN): the mount clears it
        if ((err as NodeJS.ErrnoException).code !== 'ENOTCONN') throw err;
      }
      const cfg = path.join(root, `${name}.json`);
      writeFileSync(cfg, JSON.stringify({ registryLeaseSeconds: 2, claimLeaseMs: 60_000, scoMaxAgeMs: 200, scoClusters: 16, tlogScos: 2, autoMove: false, ...config }));
      return {
        mountpoint, state: path.join(root, `${name}-state`), backend,
        extraArgs: ['--vpool', 'pool', '--router', name, '--registry', etcd.url, ...etcd.securityArgs, '--failure-domain', `fd-${name}`, '--config', cfg, ...extra],
      };
    },
    routers: async () => JSON.parse(await list(true)) as RouterRow[],
    routerTable: () => list(false),
  };
}

/** Starts a mount that is expected to be refused; its exit code and output once it has exited. */
export async function refusedMount(opts: MountOpts): Promise<{ code: number | null; log: string }> {
  const m = new MountHandle(opts);
  const { code } = await m.exited;
  return { code, log: m.log };
}

/**
 * Mounts `opts` again and again until one is ready (each refusal must match `refusal`); the number of
 * refusals. The router that holds the vPool is dead or paused: its registry lease expires, then one works.
 */
export async function mountOnceFree(t: ExecutionContext, opts: MountOpts, refusal: RegExp): Promise<{ m: MountHandle; refusals: number }> {
  for (let refusals = 0; ; refusals++) {
    const m = new MountHandle(opts);
    try {
      await m.waitReady();
      t.teardown(() => m.stop(30_000).then(() => undefined));
      return { m, refusals };
    } catch {
      await m.exited;
      if (!refusal.test(m.log)) throw new Error(`the mount failed for another reason than ${refusal}:\n${m.log}`);
    }
  }
}


/**
 * Waits until router `name` records the vDisk at `file` (its path in the vPool) under a sync DTL — a router records
 * its vDisks' protection as it changes, and an owner judges a takeback from it. Returns the vDisk's id.
 */
export async function recordedSync(c: Cluster, name: string, file: string): Promise<string> {
  let id = '';
  await until(`${name} records ${file} under a sync DTL`, async () => {
    const v = (await c.routers()).find((r) => r.name === name)?.vdisks.find((x) => x.path === file) as { id: string; dtl?: { mode: string } } | undefined;
    id = v?.id ?? '';
    return v?.dtl?.mode === 'sync';
  });
  return id;
}
