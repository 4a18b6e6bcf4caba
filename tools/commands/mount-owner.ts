/**
 * The owner's part of `vpoolfs mount` (tools/commands/mount-cmd.ts runs it): open the backend and the vPool,
 * build the handlers, mount them (or switch a registry mount's table to them in place), serve the management
 * API, the router link and NBD, the snapshot schedule and the config watch. Returns an `Owning` whose `stop`
 * is the clean stop (ship everything, unmount, exit) and which, with a registry, ends by itself when the vPool
 * is handed to another router (a planned move, docs/cluster.md "Moves"):
 *
 *   0. the bulk is shipped while calls still run (as in a clean stop);
 *   1. the calls of this router's own mount wait (its table holds them) and the running ones answer; the router
 *      link closes (the followers' calls wait on their side); the API, NBD, schedules and jobs stop;
 *   2. the running forwarded calls answer (the stop fence), then the vPool closes: every vDisk and the tree
 *      shipped, map checkpoints written, DTL entries retired, the backend claim released;
 *   3. one etcd transaction hands the vPool to the target (registry/move.ts commitMove) if it is still alive;
 *   4. this router follows the target (tools/daemon/follower.ts followAgain): its open files are re-opened
 *      there by path and the waiting calls run there once the target serves its link.
 * A handover that cannot finish (the target gone before step 3, the vPool not closing) is abandoned: the
 * result says why and this router opens the vPool again and serves on (`ended` resolves 'abandoned').
 */
import { buildHandlers } from '../../fuse/handlers.js';
import { mountWith, type FuseEngine, type Mounted } from '../../fuse/mount.js';
import { logger } from '../../util/log.js';
import type { VPool } from '../../volume/types.js';
import { openVPool } from '../../volume/vpool.js';
import { openBackend, openBackendOn, readKeyFile, type OpenBackendOptions } from '../../volume/backend/open-backend.js';
import { MoveJob, openMove } from '../../volume/policy/move-job.js';
import { parseHostPort, type MountConfig, type ResolvedMount } from '../daemon/config.js';
import { watchConfig, type ConfigWatcher } from '../daemon/config-watch.js';
import type { FuseMetrics } from '../metrics/metrics.js';
import { startApi, type ApiPlan, type DaemonApi } from '../daemon/api-serve.js';
import { SnapshotScheduler } from '../../volume/snapshots/snapshot-schedule.js';
import { DelegateForwarder } from '../daemon/delegate-calls.js';
import { dtlForMount } from '../daemon/dtl-mount.js';
import { startNbdServer, type NbdServer } from '../../nbd/server.js';
import { rekeyFor, registerRekeyMetrics } from './rekey-cmd.js';
import { registerMoveMetrics } from './move-cmd.js';
import type { RouterSession } from '../../registry/router-session.js';
import { recordVDisks } from '../../registry/ownership.js';
import { commitMove, endMove, movePhase, moveTarget, type MoveRequest } from '../../registry/move.js';
import { vdisksOf } from '../../registry/vpool-walk.js';
import { LinkServer } from '../../router-link/server.js';
import type { Follower } from '../daemon/follower.js';
import { goneServersOf, watchRegisteredDtlServers } from '../daemon/dtl-registry.js';
import { HandoverWatch } from '../daemon/handover.js';
import { VDiskMover } from '../daemon/vdisk-move.js';
import { VDiskAutoMove } from '../daemon/vdisk-automove.js';
import { delegatedVDisks } from '../../registry/vdisk-delegation.js';
import type { OwnerRecord } from '../../registry/keys.js';
import { RoutedTable } from '../../router-link/vdisk-routes.js';
import type { ClusterStats } from '../metrics/cluster-metrics.js';

const log = logger('cli');

export interface OwnerContext {
  cfg: ResolvedMount;
  file: MountConfig;
  flags: { force?: boolean; config?: string; debugFuse?: boolean };
  apiPlan: ApiPlan;
  metrics?: FuseMetrics;
  engine: FuseEngine;
  session?: RouterSession;
  /** With a registry: the mount (a switchable table, kept for the router's life). */
  router?: Follower;
  /** The router link's secret. */
  secret?: Buffer;
  /** With a registry: this router's delegate side (the vDisks other owners delegated to it; ownership per vDisk). */
  delegate?: { closeAll(why: string): Promise<void> };
  /** Counts of the registry and the link (tools/metrics/cluster-metrics.ts). */
  stats: ClusterStats;
  /** A handover began: signals wait until it is over. */
  handing: () => void;
  /** A handover was given up before anything stopped: this router serves on (signals stop it again). */
  serving: (stop: (why: string) => Promise<void>) => void;
  /** The kernel engine lost the mount (an `umount` from outside): stop. */
  onLost: (why: string) => void;
}

export interface Owning {
  vpool: VPool;
  mounted: Mounted;
  link?: LinkServer;
  /** The clean stop (ships everything, unmounts, closes the vPool, exits the process). */
  stop: (why: string) => Promise<void>;
  /** Resolves when the vPool was handed to another router ('moved') or a handover was abandoned ('abandoned'). */
  ended: Promise<'moved' | 'abandoned'>;
}

/** How long a handover ships while calls still run before it holds them (the close ships the rest). */
const SHIP_WHILE_SERVING_MS = 3000;

/** Gauges registered once per process (a registry mount opens the vPool again after each ownership change). */
let attached = false;

export async function serveOwner(x: OwnerContext): Promise<Owning> {
  const { cfg, file, flags, metrics, engine, session, router } = x;
  const ownedSince = Date.now();
  // a backend move: a mirror of the old backend and the new one until the move job switches (volume/policy/move-job.ts)
  const moving = cfg.moveFrom === undefined ? undefined : await openMove(cfg.moveFrom, cfg.backend, cfg.state);
  // the backend, encrypted with AES-256-GCM when a key file is given (volume/backend/open-backend.ts); opened again
  // for each time this router owns the vPool (closing the vPool closes it)
  const opened = await (moving === undefined ? (o: OpenBackendOptions) => openBackend(cfg.backend, o) : (o: OpenBackendOptions) => openBackendOn(moving.store, o))({
    encryptionKey: cfg.encryptionKeyFile === undefined ? undefined : await readKeyFile(cfg.encryptionKeyFile),
    oldKeys: await Promise.all((cfg.oldEncryptionKeyFile ?? []).map((f) => readKeyFile(f))),
    localDir: cfg.state,
  });
  const backend = metrics ? metrics.backend.wrap(opened) : opened;
  let handedOver = false;
  // ownership per vDisk: the vDisks the registry records as delegated stay closed at the vPool's start (another
  // router may be writing one: opening it here would rebuild it without a fence and number TLogs over its own);
  // the mover routes them to their delegate, or takes them back, fenced (tools/daemon/vdisk-move.ts adopt). A
  // vDisk delegated to this router itself (it took the vPool over while serving it as a delegate) is shipped and
  // closed by its delegate side first, then taken back the same way.
  if (session !== undefined) await x.delegate?.closeAll(`this router opens vPool '${cfg.vpool}' as its owner`);
  const delegatedRecs = session === undefined ? new Map<string, OwnerRecord>() : await delegatedVDisks(session.registry.client, cfg.vpool);
  // their calls wait (not BUSY) until the mover routed them or took them back
  for (const r of delegatedRecs.values()) if (r.path !== undefined) void router?.routes.hold(r.path, `vDisk ${r.path} is delegated to router '${r.router}': this router's start as the vPool's owner routes it there or takes it back`);
  if (delegatedRecs.size > 0) log.warn(`vPool '${cfg.vpool}' has ${delegatedRecs.size} vDisk(s) delegated to other routers: not opened here`, { delegated: Object.fromEntries([...delegatedRecs].map(([id, r]) => [r.path ?? id, { router: r.router, tag: r.tag }])) });
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
    delegated: new Map([...delegatedRecs].map(([id, r]) => [id, r.router])),
    // a paused owner that resumed checks it still owns the vPool before it acknowledges anything (ackCheck)
    ...(session === undefined ? {} : { beforeAck: (what: string) => session.ackCheck(what) }),
    // a router that finds another one owning its vPool now is fenced at once: its backend claim renews (and
    // finds the new owner's epoch), else it is fenced on the registry's word — not after it handed the vPool
    // over itself (that claim is released)
    onClaim: (claim) => session?.onLost((owner) => {
      if (handedOver) return;
      void claim.renew().finally(() => {
        if (claim.fenced === null) claim.fenceNow(`the registry says router '${owner}' owns the vPool now`);
      });
    }),
    dtl: dtlForMount(cfg, session === undefined ? undefined : goneServersOf(session)),
  });

  let mounted: Mounted | undefined;
  let watcher: ConfigWatcher | undefined;
  let scheduler: SnapshotScheduler | undefined;
  let api: DaemonApi | undefined;
  let nbd: NbdServer | undefined;
  let link: LinkServer | undefined;
  let stopDtlWatch: (() => void) | undefined;
  let handover: HandoverWatch | undefined;
  let mover: VDiskMover | undefined;
  let automove: VDiskAutoMove | undefined;
  // key rotation: the background rewrite under the new key (volume/policy/rekey-job.ts); started below when one is unfinished
  const rekey = rekeyFor(opened, vpool, cfg);
  // ownership per vDisk: the API's routes and the snapshot schedule on a delegated vDisk go to its router (tools/daemon/delegate-calls.ts)
  const forwarder = session === undefined ? undefined : new DelegateForwarder(() => mover, cfg.peerWaitMs ?? 60_000);
  const move = moving?.mirror ? new MoveJob({ mirror: moving.mirror, stateDir: cfg.state, gate: (w) => vpool.backendGate?.(w) ?? Promise.resolve(), objectsPerSecond: cfg.moveObjectsPerSecond }) : undefined;
  let handlers: ReturnType<typeof buildHandlers>;
  try {
    await session?.attach(() => vdisksOf(vpool));
    // the DTL servers other routers registered join this router's list: a dead DTL server is replaced (tools/daemon/dtl-registry.ts)
    if (session !== undefined && cfg.dtlServer !== undefined && cfg.dtlServer.length > 0) stopDtlWatch = watchRegisteredDtlServers(session, cfg.dtlServer);
    api = await startApi(x.apiPlan, cfg, vpool, backend, engine, () => mounted, rekey, move, forwarder && ((p, method, url, body) => forwarder.api(p, method, url, body)));
    const apiNow = api;
    if (metrics && !attached) {
      attached = true;
      metrics.attach(() => x.stats.current?.mounted.fds, () => x.stats.current?.vpool.cacheStats() ?? vpool.cacheStats(), () => (x.stats.current?.vpool ?? vpool).scrub.totals());
      if (rekey) registerRekeyMetrics(metrics.registry, rekey);
      if (move) registerMoveMetrics(metrics.registry, move);
    }
    handlers = buildHandlers(vpool, cfg.mountpoint, metrics, () => apiNow.info());
    // a registry mount switches its table to these handlers in place; else they are mounted
    mounted = router !== undefined ? await router.serveLocally(handlers) : await mountWith({
      vpool,
      mountpoint: cfg.mountpoint,
      engine,
      debug: flags.debugFuse,
      // an `umount` from outside ends the kernel session: stop as on SIGTERM (ship everything, exit 0)
      onLost: x.onLost,
    }, handlers);
    if (session !== undefined) {
      // followers forward their mounts' calls to these handlers (docs/cluster.md, "Followers")
      const { host, port } = parseHostPort(cfg.peerListen ?? '127.0.0.1:0', '--peer-listen');
      // other routers' calls on a vDisk delegated to a third router go on to it (ownership per vDisk)
      const linkOps = router === undefined ? handlers.ops : new RoutedTable(router.routes, handlers.ops).ops;
      // (a rename on this router's own mount: the link's per-handle paths follow it, as the automatic move counts them)
      link = await LinkServer.start({ host, port, secret: x.secret, router: cfg.router, vpool: cfg.vpool, ops: linkOps, renames: router?.routes });
      x.stats.addLink(link);
      await session.registry.update({ address: link.address });
    }
    if (cfg.nbd) nbd = await startNbdServer({ vpool, fds: mounted.fds, listen: cfg.nbd, tlsCertFile: cfg.nbdTlsCert, tlsKeyFile: cfg.nbdTlsKey });
    if (cfg.scrub !== undefined) vpool.scrub.setLimits(cfg.scrub);
    scheduler = new SnapshotScheduler(vpool, Date.now, forwarder);
    scheduler.apply(cfg.schedule);
    const sched = scheduler;
    if (flags.config) watcher = watchConfig(flags.config, file, vpool, (s) => sched.apply(s));
  } catch (err) {
    await link?.close().catch(() => undefined);
    await api?.server.close().catch(() => undefined);
    await nbd?.close().catch(() => undefined);
    if (router === undefined) await mounted?.unmount().catch(() => undefined);
    await vpool.close().catch((e: unknown) => log.error('closing the vPool failed', { error: String(e) }));
    throw err;
  }
  x.stats.current = { vpool, mounted, link };
  if (rekey?.pending) void rekey.start();
  if (move) void move.start();
  log.info('ready', { mountpoint: cfg.mountpoint, vpool: cfg.vpool, engine: mounted.engine, options: mounted.options, metrics: cfg.metrics ?? null, nbd: nbd?.addresses ?? null, api: api.server.socket, apiTcp: api.server.tcp, role: session === undefined ? undefined : 'owner' });
  const apiServer = api.server;
  const linkServer = link;
  const m = mounted;
  const stop = makeStop(vpool, m, nbd, async () => {
    handover?.stop();
    await automove?.stop();
    // the delegated vDisks come back first: a release of the vPool would fence their routers
    await mover?.stop();
    await mover?.takeAllBack('this router stops');
    // no automatic snapshot may start once a stop begins (it would miss the final ship)
    await scheduler?.stop();
    // followers' calls wait on their side from now on, until this router released the vPool (then one takes it)
    await linkServer?.close();
    await apiServer.close();
    await rekey?.stop(); // before the final ship: no rewrite may race the vPool's close
    await move?.stop();
  }, () => Promise.all([watcher?.close(), stopDtlWatch?.(), session?.stop()]));

  let end!: (how: 'moved' | 'abandoned') => void;
  const ended = new Promise<'moved' | 'abandoned'>((r) => (end = r));

  /** The handover asked by `req` (see the header); it never throws: a failure is an abandoned move. */
  const own = () => x.serving(stop);
  const handOver = async (req: MoveRequest): Promise<void> => {
    const etcd = session!.registry.client;
    const t0 = Date.now();
    const say = (phase: string) => movePhase(etcd, req, phase).catch(() => undefined);
    log.warn(`MOVE: handing vPool '${cfg.vpool}' over to router '${req.to}' (${req.reason}, asked at ${req.at})`, { vpool: cfg.vpool, to: req.to, reason: req.reason, id: req.id });
    const target = await moveTarget(etcd, req).catch(() => null);
    if (target === null) {
      const why = `router '${req.to}' is not a live follower of vPool '${cfg.vpool}' any more: the move is abandoned, router '${cfg.router}' serves on`;
      log.warn(`MOVE: ${why}`, { vpool: cfg.vpool, to: req.to });
      await endMove(etcd, req, why).catch(() => undefined);
      handover?.start();
      return;
    }
    x.handing();
    // the vPool moves whole: its delegated vDisks come back here first (and none moves by itself meanwhile)
    await automove?.stop();
    await mover?.stop();
    await mover?.takeAllBack(`vPool '${cfg.vpool}' moves to router '${req.to}'`);
    // the bulk goes to the backend while calls still run (as in a clean stop): the pause below ships only the rest
    await say('shipping while serving');
    // (bounded: under a steady writer and a slow backend it could take long; the close ships what is left)
    const shipped = vpool.syncToBackend().catch((err: unknown) => log.warn('MOVE: shipping before the handover failed; the close tries again', { error: String((err as Error).message ?? err) }));
    await Promise.race([shipped, new Promise((r) => setTimeout(r, SHIP_WHILE_SERVING_MS))]);
    if (await moveTarget(etcd, req).catch(() => null) === null) {
      const why = `router '${req.to}' is not a live follower of vPool '${cfg.vpool}' any more: the move is abandoned, router '${cfg.router}' serves on`;
      log.warn(`MOVE: ${why}`, { vpool: cfg.vpool, to: req.to });
      await endMove(etcd, req, why).catch(() => undefined);
      own();
      mover?.start();
      automove?.start();
      handover?.start();
      return;
    }
    await say('holding calls');
    const tHold = Date.now();
    await router!.table.hold(`vPool '${cfg.vpool}' is being handed over to router '${req.to}'`);
    await linkServer?.close();
    await apiServer.close().catch(() => undefined);
    await nbd?.close().catch(() => undefined);
    await scheduler?.stop();
    await watcher?.close();
    await rekey?.stop();
    await move?.stop();
    stopDtlWatch?.();
    await session!.detach();
    // the calls forwarded by followers that are still running answer before the vPool closes
    await handlers.fence.close();
    await say('shipping everything to the backend');
    const list = vdisksOf(vpool);
    try {
      await vpool.close();
    } catch (err) {
      const why = `closing the vPool failed (${(err as Error).message}): the move is abandoned, router '${cfg.router}' opens it again and serves on`;
      log.error(`MOVE: ${why}`, { vpool: cfg.vpool, to: req.to });
      await endMove(etcd, req, why).catch(() => undefined);
      return end('abandoned');
    }
    // everything is in the backend: should this router die now, the vPool is safe to take over by itself
    await recordVDisks(etcd, cfg.vpool, cfg.router, session!.tag, list.map((d) => ({ ...d, dtl: { ...d.dtl, dirty: false, since: new Date().toISOString() } }))).catch(() => false);
    await say('handing over');
    const tag = await commitMove(etcd, req, target, list).catch((err: unknown) => {
      log.warn('MOVE: the handover transaction failed (etcd unreachable?)', { error: String((err as Error).message ?? err) });
      return null;
    });
    if (tag === null) {
      const why = `router '${req.to}' went away (or the request did) before the handover: the move is abandoned, router '${cfg.router}' opens the vPool again and serves on`;
      log.warn(`MOVE: ${why}`, { vpool: cfg.vpool, to: req.to });
      await endMove(etcd, req, why).catch(() => undefined);
      return end('abandoned');
    }
    handedOver = true;
    x.stats.movesOut++;
    log.warn(`MOVE: handed vPool '${cfg.vpool}' over to router '${req.to}' (owner tag ${req.tag} → ${tag}) after ${Date.now() - t0} ms (calls held for the last ${Date.now() - tHold} ms): everything was in the backend, the backend claim released; this router follows it now`,
      { vpool: cfg.vpool, to: req.to, tag, ms: Date.now() - t0, heldMs: Date.now() - tHold });
    await session!.becomeFollower(target);
    router!.followAgain(target);
    end('moved');
  };

  if (session !== undefined && router !== undefined) {
    mover = new VDiskMover({ session, vpool, router: cfg.router, routes: router.routes, secret: x.secret, waitMs: cfg.peerWaitMs ?? 60_000, ownOps: () => handlers.ops });
    await mover.adopt(delegatedRecs);
    mover.start();
    // the end of a live migration, per vDisk: a vDisk only another router holds open moves there (and back)
    const m = mover;
    automove = new VDiskAutoMove({
      session, vpool, router: cfg.router, ownedSince, secret: x.secret,
      auto: { enabled: cfg.autoMove ?? true, afterMs: cfg.autoMoveAfterMs ?? 2000, holdMs: cfg.autoMoveHoldMs ?? 30_000 },
      ownHandles: () => router.routed.handlesByPath(),
      linkHolders: () => linkServer?.holdersByPath() ?? new Map(),
      delegated: () => m.delegated,
    });
    automove.start();
    handover = new HandoverWatch({ session, vpool: cfg.vpool, router: cfg.router, handOver });
    handover.start();
  }
  return { vpool, mounted: m, link, stop, ended };
}

/** The clean stop of an owner: ship, fence, unmount, close, exit with 0 (1 when something failed). */
function makeStop(vpool: VPool, mounted: Mounted, nbd: NbdServer | undefined, closeApi: () => Promise<void>, closeExtras: () => Promise<unknown>): (why: string) => Promise<void> {
  let stopping = false;
  return async (signal: string) => {
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
}
