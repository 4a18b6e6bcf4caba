/**
 * `vpoolfs mount MOUNTPOINT`: the composition root of a daemon. Resolves flags + config file + defaults,
 * refuses options the volume layer does not implement yet, clears a stale mount, opens the vPool,
 * serves the management API (tools/daemon/api-serve.ts, before the mount so that the API answers once the mount
 * does), mounts it, serves metrics and watches the config. Stays in the foreground; on SIGINT/SIGTERM it
 * closes the API, ships everything to the backend, unmounts, closes the vPool and exits 0.
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_FUSE_ENGINE, mountWith, type Mounted } from '../../fuse/mount.js';
import { buildHandlers } from '../../fuse/handlers.js';
import { logger, setLogLevel } from '../../util/log.js';
import type { VPool } from '../../volume/types.js';
import { openVPool } from '../../volume/vpool.js';
import { openBackend, openBackendOn, readKeyFile, type OpenBackendOptions } from '../../volume/backend/open-backend.js';
import { MoveJob, openMove } from '../../volume/policy/move-job.js';
import { ConfigError, loadConfigFile, parseHostPort, resolveMount, validateConfig, type MountConfig, type ResolvedMount } from '../daemon/config.js';
import { watchConfig, type ConfigWatcher } from '../daemon/config-watch.js';
import { FuseMetrics, serveMetrics, type MetricsServer } from '../metrics/metrics.js';
import { prepareMountpoint } from '../daemon/mountpoint.js';
import { planApi, startApi, type DaemonApi } from '../daemon/api-serve.js';
import { lockState } from '../daemon/state-lock.js';
import { SnapshotScheduler } from '../../volume/snapshots/snapshot-schedule.js';
import { dtlForMount } from '../daemon/dtl-mount.js';
import { parseNbdAddress, checkNbdListen } from '../../nbd/address.js';
import { isLoopback } from '../../dtl-client/server.js';
import { startNbdServer, type NbdServer } from '../../nbd/server.js';
import { rekeyFor, registerRekeyMetrics } from './rekey-cmd.js';
import { registerMoveMetrics } from './move-cmd.js';
import { RouterSession } from '../../registry/router-session.js';
import type { FuseEngine } from '../../fuse/mount.js';
import { vdisksOf } from '../../registry/vpool-walk.js';
import { isCode } from '../../util/errors.js';
import { readSecretFile } from '../../dtl-client/auth.js';
import { LinkServer } from '../../router-link/server.js';
import { Follower } from '../daemon/follower.js';
import { watchRegisteredDtlServers } from '../daemon/dtl-registry.js';

const log = logger('cli');

export interface MountFlags {
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
  if (flags.standby === true && cfg.registry === undefined) throw new ConfigError('--standby needs --registry (the registry says when the owner is gone)');
  if (cfg.logLevel) setLogLevel(cfg.logLevel);
  const apiPlan = await planApi(cfg);
  cfg.mountpoint = await prepareMountpoint(cfg.mountpoint);

  const lock = await lockState(cfg.state);
  process.on('exit', () => lock.release());
  log.info('opening vPool', { vpool: cfg.vpool, state: cfg.state, backend: cfg.backend, router: cfg.router, dtl: cfg.dtl });
  // the backend, encrypted with AES-256-GCM when a key file is given (volume/backend/open-backend.ts); the
  // state directory keeps a copy of its encryption marker, so that a restart during an outage still mounts
  // metrics first: the backend is measured by operation from its first request on
  const metrics = cfg.metrics ? new FuseMetrics(cfg.vpool, cfg.metricsTopVdisks ?? 10) : undefined;
  // a backend move: a mirror of the old backend and the new one until the move job switches (volume/policy/move-job.ts)
  const moving = cfg.moveFrom === undefined ? undefined : await openMove(cfg.moveFrom, cfg.backend, cfg.state);
  const opened = await (moving === undefined ? (o: OpenBackendOptions) => openBackend(cfg.backend, o) : (o: OpenBackendOptions) => openBackendOn(moving.store, o))({
    encryptionKey: cfg.encryptionKeyFile === undefined ? undefined : await readKeyFile(cfg.encryptionKeyFile),
    oldKeys: await Promise.all((cfg.oldEncryptionKeyFile ?? []).map((f) => readKeyFile(f))),
    localDir: cfg.state,
  });
  const backend = metrics ? metrics.backend.wrap(opened) : opened;
  // with a registry: register, and own the vPool there first (refused while a live router owns it); a
  // takeover from a router whose lease is gone takes the backend's claim from it at once (docs/cluster.md)
  // a standby stopped (SIGINT/SIGTERM) while it waits leaves the registry and exits 0: nothing was mounted
  const standby = new AbortController();
  const endStandby = (): void => standby.abort();
  if (flags.standby === true) for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, endStandby);
  const session = cfg.registry === undefined ? undefined : await RouterSession.start({
    registry: cfg.registry, name: cfg.router, state: cfg.state, failureDomain: cfg.failureDomain, api: cfg.api,
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
  const engine = cfg.fuseEngine ?? DEFAULT_FUSE_ENGINE;
  const follower = session?.following ? await follow(cfg, session, engine, flags.debugFuse) : undefined;
  const vpool = await openVPool({
    name: cfg.vpool,
    stateDir: cfg.state,
    backendUrl: cfg.backend,
    backend,
    routerId: cfg.router,
    metadata: 'lmdb',
    scoClusters: cfg.scoClusters,
    tlogScos: cfg.tlogScos,
    writeCacheBytes: cfg.writeCacheBytes,
    readCacheBytes: cfg.readCacheBytes,
    scoMaxAgeMs: cfg.scoMaxAgeMs,
    checkpointEveryTlogs: cfg.checkpointEveryTlogs,
    claimLeaseMs: cfg.claimLeaseMs,
    force: flags.force === true || session?.takeover === true,
    ownerTag: session?.tag,
    // a router that finds another one owning its vPool now is fenced at once: its backend claim renews (and
    // finds the new owner's epoch), else it is fenced on the registry's word
    onClaim: (claim) => session?.onLost((owner) => void claim.renew().finally(() => {
      if (claim.fenced === null) claim.fenceNow(`the registry says router '${owner}' owns the vPool now`);
    })),
    dtl: dtlForMount(cfg),
  }).catch(async (err: unknown) => {
    // a follower that took the vPool over but cannot open it: its mount goes (its calls answer EIO), then the error
    await follower?.stop().catch(() => undefined);
    await session?.stop();
    throw err;
  });

  let mounted: Mounted | undefined;
  let metricsServer: MetricsServer | undefined;
  let watcher: ConfigWatcher | undefined;
  let scheduler: SnapshotScheduler | undefined;
  let api: DaemonApi | undefined;
  let nbd: NbdServer | undefined;
  // key rotation: the background rewrite under the new key (volume/policy/rekey-job.ts); started below when one is unfinished
  const rekey = rekeyFor(opened, vpool, cfg);
  const move = moving?.mirror ? new MoveJob({ mirror: moving.mirror, stateDir: cfg.state, gate: (w) => vpool.backendGate?.(w) ?? Promise.resolve(), objectsPerSecond: cfg.moveObjectsPerSecond }) : undefined;
  let link: LinkServer | undefined;
  let stopDtlWatch: (() => void) | undefined;
  try {
    await session?.attach(() => vdisksOf(vpool));
    // the DTL servers other routers registered join this router's list: a dead DTL server is replaced (tools/daemon/dtl-registry.ts)
    if (session !== undefined && cfg.dtlServer !== undefined && cfg.dtlServer.length > 0) stopDtlWatch = watchRegisteredDtlServers(session, cfg.dtlServer);
    api = await startApi(apiPlan, cfg, vpool, backend, engine, () => mounted, rekey, move);
    const apiNow = api;
    metrics?.attach(() => mounted?.fds, () => vpool.cacheStats(), () => vpool.scrub.totals());
    if (metrics && rekey) registerRekeyMetrics(metrics.registry, rekey);
    if (metrics && move) registerMoveMetrics(metrics.registry, move);
    const handlers = buildHandlers(vpool, cfg.mountpoint, metrics, () => apiNow.info());
    // a follower that took the vPool over switches its mount to these handlers in place; else they are mounted
    mounted = follower !== undefined ? await follower.serveLocally(handlers) : await mountWith({
      vpool,
      mountpoint: cfg.mountpoint,
      engine,
      debug: flags.debugFuse,
      // an `umount` from outside ends the kernel session: stop as on SIGTERM (ship everything, exit 0)
      onLost: (why) => void stopNow?.(`unmounted from outside (${why})`),
    }, handlers);
    if (session !== undefined) {
      // followers forward their mounts' calls to these handlers (docs/cluster.md, "Followers")
      const { host, port } = parseHostPort(cfg.peerListen ?? '127.0.0.1:0', '--peer-listen');
      link = await LinkServer.start({ host, port, secret: linkSecret(cfg), router: cfg.router, vpool: cfg.vpool, ops: handlers.ops });
      await session.registry.update({ address: link.address });
    }
    if (metrics && cfg.metrics) {
      const { host, port } = parseHostPort(cfg.metrics, '--metrics');
      metricsServer = await serveMetrics(host, port, metrics.registry);
    }
    if (cfg.nbd) nbd = await startNbdServer({ vpool, fds: mounted.fds, listen: cfg.nbd, tlsCertFile: cfg.nbdTlsCert, tlsKeyFile: cfg.nbdTlsKey });
    if (cfg.scrub !== undefined) vpool.scrub.setLimits(cfg.scrub);
    scheduler = new SnapshotScheduler(vpool);
    scheduler.apply(cfg.schedule);
    const sched = scheduler;
    // no automatic snapshot may start once a stop begins (it would miss the final ship): before installStop's handlers
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.prependListener(sig, () => sched.stop());
    if (flags.config) watcher = watchConfig(flags.config, file, vpool, (s) => sched.apply(s));
  } catch (err) {
    await link?.close().catch(() => undefined);
    await api?.server.close().catch(() => undefined);
    await nbd?.close().catch(() => undefined);
    await mounted?.unmount().catch(() => undefined);
    if (mounted === undefined) await follower?.stop().catch(() => undefined);
    await vpool.close().catch((e: unknown) => log.error('closing the vPool failed', { error: String(e) }));
    await session?.stop();
    throw err;
  }
  if (rekey?.pending) void rekey.start();
  if (move) void move.start();
  log.info('ready', { mountpoint: cfg.mountpoint, vpool: cfg.vpool, engine: mounted.engine, options: mounted.options, metrics: metricsServer?.address ?? null, nbd: nbd?.addresses ?? null, api: api.server.socket, apiTcp: api.server.tcp });
  const apiServer = api.server;
  const linkServer = link;
  stopNow = installStop(vpool, mounted, nbd, async () => {
    // followers' calls wait on their side from now on, until this router released the vPool (then one takes it)
    await linkServer?.close();
    await apiServer.close();
    await rekey?.stop(); // before the final ship: no rewrite may race the vPool's close
    await move?.stop();
  }, () => Promise.all([watcher?.close(), metricsServer?.close(), scheduler?.stop(), stopDtlWatch?.(), session?.stop()]));
  if (pendingStop !== undefined) void stopNow(pendingStop);
}

/**
 * Mounts as a follower of the vPool's live owner and waits until this router takes it over (the owner died
 * or stopped); a SIGINT/SIGTERM meanwhile unmounts, leaves the registry and exits 0 (nothing to ship).
 */
async function follow(cfg: ResolvedMount, session: RouterSession, engine: FuseEngine, debug?: boolean): Promise<Follower> {
  let following = true;
  const f = await Follower.start({
    session, vpool: cfg.vpool, router: cfg.router, state: cfg.state, failureDomain: cfg.failureDomain, mountpoint: cfg.mountpoint,
    engine, debug, secret: linkSecret(cfg), waitMs: cfg.peerWaitMs ?? 60_000,
    onLost: (why) => void (following ? leave(`unmounted from outside (${why})`) : stopNow?.(`unmounted from outside (${why})`)),
  });
  log.info('ready', { mountpoint: cfg.mountpoint, vpool: cfg.vpool, engine, role: 'follower', owner: session.following?.name });
  let leaving = false;
  const leave = async (why: string): Promise<void> => {
    if (leaving) return;
    leaving = true;
    log.info(`${why}: a follower stops (nothing to ship: the owner has every write)`, { mountpoint: cfg.mountpoint });
    await f.stop().catch((err: unknown) => log.error('unmounting the follower failed', { error: String(err) }));
    await session.stop();
    log.info('stopped', { mountpoint: cfg.mountpoint, exitCode: 0 });
    process.exit(0);
  };
  // once taking over, a signal waits for the owner's stop sequence (installed when the vPool is open and mounted)
  const onSignal = (sig: string) => {
    if (following) void leave(sig);
    else if (stopNow === undefined) pendingStop ??= sig;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, onSignal);
  const taken = await f.owned;
  following = false;
  await session.becomeOwner(taken);
  return f;
}

/** The stop sequence, once installed (the kernel engine calls it when the mount is taken away from outside). */
let stopNow: ((why: string) => Promise<void>) | undefined;
/** A signal that came while a follower was taking the vPool over: the stop runs once installed. */
let pendingStop: string | undefined;

function installStop(vpool: VPool, mounted: Mounted, nbd: NbdServer | undefined, closeApi: () => Promise<void>, closeExtras: () => Promise<unknown>): (why: string) => Promise<void> {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn(`${signal}: already stopping, shipping the write cache to the backend`);
      return;
    }
    stopping = true;
    log.info(`${signal}: stopping`, { mountpoint: mounted.mountpoint });
    let code = 0;
    // no management call may change the vPool once the final ship begins
    await closeApi().catch((err: unknown) => log.warn('closing the management API failed', { error: String(err) }));
    try {
      // ship the bulk while still serving, then fence changes so that the final ship (close) has every acknowledged write
      await vpool.syncToBackend();
    } catch (err) {
      code = 1;
      log.error('shipping to the backend failed; the data stays in the local write cache', { error: String(err) });
    }
    // NBD writes do not pass the mount's fence: its clients are let go (requests in flight answered) first
    await nbd?.close().catch((e: unknown) => log.error('stopping the NBD server failed', { error: String(e) }));
    await mounted.fence();
    try {
      await mounted.unmount();
    } catch (err) {
      code = 1;
      log.error('unmount failed', { mountpoint: mounted.mountpoint, error: String(err) });
    }
    try {
      await vpool.close();
    } catch (err) {
      code = 1;
      log.error('closing the vPool (the final ship to the backend) failed; the data stays in the local write cache', { error: String(err) });
    }
    await closeExtras().catch(() => undefined);
    log.info('stopped', { mountpoint: mounted.mountpoint, exitCode: code });
    process.exit(code);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGHUP', () => log.info('SIGHUP ignored: the config file is watched'));
  // A storage daemon keeps serving: a stray error is logged, not allowed to leave a dead mount behind.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: err instanceof Error ? err.stack : String(err) }));
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack }));
  return stop;
}
