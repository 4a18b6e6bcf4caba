/**
 * `vpoolfs mount MOUNTPOINT`: the composition root of a daemon. Resolves flags + config file + defaults,
 * refuses options the volume layer does not implement yet, clears a stale mount, opens the vPool,
 * serves the management API (tools/daemon/api-serve.ts, before the mount so that the API answers once the mount
 * does), mounts it, serves metrics and watches the config (the owner's part: ./mount-owner.ts). Stays in the
 * foreground; on SIGINT/SIGTERM it closes the API, ships everything to the backend, unmounts, closes the vPool
 * and exits 0. With --registry the router may own the vPool, follow its owner, and switch between the two any
 * number of times (takeovers, moves: docs/cluster.md), its mount kept throughout.
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_FUSE_ENGINE } from '../../fuse/mount.js';
import { logger, setLogLevel } from '../../util/log.js';
import { ConfigError, loadConfigFile, parseHostPort, resolveMount, validateConfig, type MountConfig, type ResolvedMount } from '../daemon/config.js';
import { FuseMetrics, serveMetrics } from '../metrics/metrics.js';
import { ClusterStats, registerClusterMetrics } from '../metrics/cluster-metrics.js';
import { prepareMountpoint } from '../daemon/mountpoint.js';
import { planApi } from '../daemon/api-serve.js';
import { mountRegistrySecurity, sessionRouters } from '../daemon/registry-security.js';
import type { RegistrySecurityFlags } from '../daemon/registry-flags.js';
import { lockState } from '../daemon/state-lock.js';
import { checkNofile } from '../daemon/nofile.js';
import { dtlForMount } from '../daemon/dtl-mount.js';
import { parseNbdAddress, checkNbdListen } from '../../nbd/address.js';
import { isLoopback } from '../../dtl-client/server.js';
import { RouterSession } from '../../registry/router-session.js';
import { isCode } from '../../util/errors.js';
import { readSecretFile } from '../../dtl-client/auth.js';
import { Follower } from '../daemon/follower.js';
import { serveOwner, type OwnerContext, type Owning } from './mount-owner.js';
import { DelegateSide } from '../daemon/delegate-side.js';
import { DirectRoutes } from '../daemon/direct-routes.js';

const log = logger('cli');

export interface MountFlags extends RegistrySecurityFlags {
  vpool?: string;
  state?: string;
  backend?: string;
  encryptionKeyFile?: string;
  oldEncryptionKeyFile?: string[];
  rekeyObjectsPerSecond?: string | number;
  moveFrom?: string;
  moveObjectsPerSecond?: string | number;
  dtl?: string;
  dtlServer?: string;
  dtlSecretFile?: string;
  router?: string;
  registry?: string;
  failureDomain?: string;
  config?: string;
  metrics?: string;
  metricsTopVdisks?: string | number;
  api?: string;
  apiTokenFile?: string;
  fuseEngine?: string;
  nbd?: string[];
  nbdTlsCert?: string;
  nbdTlsKey?: string;
  debugFuse?: boolean;
  /** Take the vPool from a live claim of another router (docs/cluster.md); a flag only, never in the config. */
  force?: boolean;
  /** With --registry: wait until the vPool's owner is gone, then take it over and mount (a flag only). */
  standby?: boolean;
  /** With --registry: `false` (--no-follow) refuses the mount while another live router owns the vPool, instead of following it. */
  follow?: boolean;
  peerListen?: string;
  peerSecretFile?: string;
}

/** Validates an encryption key file (32 raw bytes or 64 hex characters). */
async function checkKeyFile(file: string, flag = '--encryption-key-file'): Promise<void> {
  let key: Buffer;
  try {
    key = await readFile(file);
  } catch (err) {
    throw new ConfigError(`${flag} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  const text = key.toString('latin1').trim();
  if (key.length !== 32 && !/^[0-9a-fA-F]{64}$/.test(text)) throw new ConfigError(`${flag} ${file}: expected 32 raw bytes or 64 hex characters, got ${key.length} bytes`);
}

/** Options the volume layer does not implement yet: validated above, refused here if not the default. */
async function refuseUnimplemented(cfg: ResolvedMount): Promise<void> {
  if (cfg.encryptionKeyFile !== undefined) await checkKeyFile(cfg.encryptionKeyFile);
  for (const f of cfg.oldEncryptionKeyFile ?? []) await checkKeyFile(f, '--old-encryption-key-file');
  if (cfg.oldEncryptionKeyFile !== undefined && cfg.encryptionKeyFile === undefined) throw new ConfigError('--old-encryption-key-file: only with --encryption-key-file (the key to rotate to)');
  dtlForMount(cfg); // --dtl async/sync without --dtl-server, an unreadable secret
  checkNbd(cfg);
  linkSecret(cfg);
}

/** The router link's secret (--peer-secret-file), read and checked; a routable --peer-listen needs one. */
function linkSecret(cfg: ResolvedMount): Buffer | undefined {
  const secret = cfg.peerSecretFile === undefined ? undefined : (() => {
    try {
      return readSecretFile(cfg.peerSecretFile!, 'router link');
    } catch (err) {
      throw new ConfigError(`--peer-secret-file: ${(err as Error).message}`);
    }
  })();
  if (cfg.peerListen !== undefined && secret === undefined && !isLoopback(parseHostPort(cfg.peerListen, '--peer-listen').host)) {
    throw new ConfigError(`--peer-listen ${cfg.peerListen}: off loopback the router link needs --peer-secret-file (the same shared secret on every router of the vPool)`);
  }
  return secret;
}

/** --nbd: TCP off loopback only with TLS; cert and key together and readable. */
function checkNbd(cfg: ResolvedMount): void {
  if ((cfg.nbdTlsCert === undefined) !== (cfg.nbdTlsKey === undefined)) throw new ConfigError('--nbd-tls-cert and --nbd-tls-key go together');
  if (cfg.nbd === undefined) return;
  try {
    checkNbdListen(cfg.nbd.map((a) => parseNbdAddress(a, '--nbd')), cfg.nbdTlsCert !== undefined, '--nbd');
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

export async function resolveFlags(mountpoint: string, flags: MountFlags): Promise<{ cfg: ResolvedMount; file: MountConfig }> {
  const { config, debugFuse: _d, force: _f, standby: _s, follow: _fo, ...rest } = flags;
  if (typeof rest.metricsTopVdisks === 'string') rest.metricsTopVdisks = /^\d+$/.test(rest.metricsTopVdisks) ? Number(rest.metricsTopVdisks) : rest.metricsTopVdisks;
  const fromFlags = validateConfig(Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)), 'flags');
  const file = config ? await loadConfigFile(config) : {};
  const cfg = resolveMount(mountpoint, fromFlags, file);
  await refuseUnimplemented(cfg);
  return { cfg, file };
}

export async function runMount(mountpoint: string, flags: MountFlags): Promise<void> {
  const { cfg, file } = await resolveFlags(mountpoint, flags);
  // the registry's TLS files and the etcd user's password, read before anything is opened (a ConfigError otherwise)
  const registryCreds = mountRegistrySecurity(cfg);
  if (flags.standby === true && cfg.registry === undefined) throw new ConfigError('--standby needs --registry (the registry says when the owner is gone)');
  if (cfg.logLevel) setLogLevel(cfg.logLevel);
  const apiPlan = await planApi(cfg);
  cfg.mountpoint = await prepareMountpoint(cfg.mountpoint);

  const lock = await lockState(cfg.state);
  process.on('exit', () => lock.release());
  checkNofile(cfg, log); // the soft RLIMIT_NOFILE raised to the hard one, a warning if still low (../daemon/nofile.ts)
  log.info('opening vPool', { vpool: cfg.vpool, state: cfg.state, backend: cfg.backend, router: cfg.router, dtl: cfg.dtl, ...(registryCreds === undefined ? {} : { registry: cfg.registry, registryAccess: registryCreds.summary }) });
  // metrics first: the backend is measured by operation from its first request on
  const metrics = cfg.metrics ? new FuseMetrics(cfg.vpool, cfg.metricsTopVdisks ?? 10) : undefined;
  const stats = new ClusterStats();
  if (metrics && cfg.registry !== undefined) registerClusterMetrics(metrics.registry, stats);
  // with a registry: register, and own the vPool there first (refused while a live router owns it); a
  // takeover from a router whose lease is gone takes the backend's claim from it at once (docs/cluster.md)
  // a standby stopped (SIGINT/SIGTERM) while it waits leaves the registry and exits 0: nothing was mounted
  const standby = new AbortController();
  const endStandby = (): void => standby.abort();
  if (flags.standby === true) {
    stats.role = 'standby';
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, endStandby);
  }
  const session = cfg.registry === undefined ? undefined : await RouterSession.start({
    registry: cfg.registry, security: registryCreds, name: cfg.router, state: cfg.state, failureDomain: cfg.failureDomain, api: cfg.api,
    dtlServer: cfg.dtlServer === undefined ? undefined : [...cfg.dtlServer], leaseSeconds: cfg.registryLeaseSeconds ?? 10, vpool: cfg.vpool, force: flags.force === true,
    standby: flags.standby === true, signal: standby.signal,
    // while a live router owns the vPool, mount as its follower (forwarding there) unless told to refuse
    follow: flags.follow !== false && flags.standby !== true && flags.force !== true,
  }).catch((err: unknown) => {
    if (!isCode(err, 'CLOSED')) throw err;
    log.info('stopped while standing by: nothing was mounted', { vpool: cfg.vpool, router: cfg.router });
    process.exit(0);
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.off(sig, endStandby);
  if (session?.takeover === true) stats.takeovers++;
  // GET /v1/routers (`vpoolfs router list` on a path of this mount) answers from this session's etcd client
  if (session !== undefined) apiPlan.registry = sessionRouters(cfg.registry!, session.registry.client, registryCreds);
  const engine = cfg.fuseEngine ?? DEFAULT_FUSE_ENGINE;
  const metricsServer = metrics && cfg.metrics ? await (async () => {
    const { host, port } = parseHostPort(cfg.metrics!, '--metrics');
    return serveMetrics(host, port, metrics.registry);
  })() : undefined;

  // what a signal does depends on what this router does at the moment (with a registry it changes)
  let phase: { kind: 'following'; leave: (why: string) => Promise<void> } | { kind: 'busy' } | { kind: 'owning'; stop: (why: string) => Promise<void> } = { kind: 'busy' };
  let pending: string | undefined;
  const onSignal = (why: string): void => {
    if (phase.kind === 'following') void phase.leave(why);
    else if (phase.kind === 'owning') void phase.stop(why);
    else pending ??= why;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => onSignal(sig));
  process.on('SIGHUP', () => log.info('SIGHUP ignored: the config file is watched'));
  // A storage daemon keeps serving: a stray error is logged, not allowed to leave a dead mount behind.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: err instanceof Error ? err.stack : String(err) }));
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack }));
  const own = (owning: Owning): void => {
    phase = { kind: 'owning', stop: owning.stop };
    if (pending !== undefined) void owning.stop(pending);
  };
  const x: OwnerContext = {
    cfg, file, flags, apiPlan, metrics, engine, session, stats, secret: session === undefined ? undefined : linkSecret(cfg),
    handing: () => { phase = { kind: 'busy' }; },
    serving: (stop) => {
      phase = { kind: 'owning', stop };
      if (pending !== undefined) void stop(pending);
    },
    onLost: (why) => onSignal(`unmounted from outside (${why})`),
  };
  if (session === undefined) {
    own(await serveOwner(x));
    return;
  }

  // with a registry the mount is a switchable table for the router's whole life: forwarding to the owner while
  // following, this router's own handlers while owning; ownership may go back and forth (takeovers, moves)
  const router = await Follower.start({
    session, vpool: cfg.vpool, router: cfg.router, state: cfg.state, failureDomain: cfg.failureDomain, mountpoint: cfg.mountpoint,
    engine, debug: flags.debugFuse, secret: x.secret, waitMs: cfg.peerWaitMs ?? 60_000, owning: session.following === null, fastReads: metrics === undefined,
    onLost: (why) => onSignal(`unmounted from outside (${why})`),
  });
  x.router = router;
  // ownership per vDisk: the vPool's owner reaches this router here about the vDisks it delegates to it
  const delegate = await DelegateSide.start(cfg, session, router.routes, router.table.ops, x.secret);
  x.delegate = delegate;
  stats.table = router.table;
  stats.linked = () => router.linked;
  // while following: the vDisks delegated to other routers are reached straight there, not through the owner
  let direct: DirectRoutes | null = null;
  let directCalls = 0;
  stats.direct = () => directCalls + (direct?.direct ?? 0);
  const stopDirect = async (): Promise<void> => {
    const d = direct;
    direct = null;
    if (d === null) return;
    directCalls += d.direct;
    await d.stop().catch((err: unknown) => log.error('dropping the direct routes to delegated vDisks failed', { error: String(err) }));
  };
  const leave = async (why: string): Promise<void> => {
    phase = { kind: 'busy' };
    log.info(`${why}: a follower stops (nothing to ship: the owner has every write)`, { mountpoint: cfg.mountpoint });
    await stopDirect();
    await delegate.stop().catch((err: unknown) => log.error('closing the vDisks delegated to this router failed', { error: String(err) }));
    await router.stop().catch((err: unknown) => log.error('unmounting the follower failed', { error: String(err) }));
    await session.stop();
    await metricsServer?.close();
    log.info('stopped', { mountpoint: cfg.mountpoint, exitCode: 0 });
    process.exit(0);
  };
  for (;;) {
    if (session.following !== null) {
      stats.role = 'follower';
      stats.current = undefined;
      log.info('ready', { mountpoint: cfg.mountpoint, vpool: cfg.vpool, engine, role: 'follower', owner: session.following.name });
      phase = { kind: 'following', leave };
      direct = DirectRoutes.start({ session, vpool: cfg.vpool, router: cfg.router, routes: router.routes, base: router.table.ops, secret: x.secret, waitMs: cfg.peerWaitMs ?? 60_000 });
      if (pending !== undefined) void leave(pending);
      const taken = await router.owned;
      await stopDirect();
      phase = { kind: 'busy' };
      if (router.movedHere) stats.movesIn++;
      else stats.takeovers++;
      await session.becomeOwner(taken);
    }
    stats.role = 'owner';
    let owning: Owning;
    try {
      owning = await serveOwner(x);
    } catch (err) {
      // the vPool cannot be opened here: the mount goes (its calls answer EIO), the registry is left (released:
      // another router takes it), then the error
      await router.stop().catch(() => undefined);
      await session.stop();
      throw err;
    }
    own(owning);
    // a planned move ends this router's ownership (it follows the new owner) or is abandoned (it opens the vPool again)
    await owning.ended;
  }
}
