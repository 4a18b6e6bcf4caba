/**
 * A registry router's side of ownership per vDisk as a delegate (docs/cluster.md, "Ownership per vDisk"): every
 * registry mount listens on a router link of its own for the vPool's owner — `delegateAddress` in its
 * registration, the host of `--peer-listen` on a free port, the same shared secret — and serves there:
 *
 *   vdiskServe(id, path, tag)  the owner handed vDisk `id` (at `path`) over and recorded this router as its owner
 *                              under owner tag `tag`: the vDisk's gate is started (the registry confirms it),
 *                              the vDisk opened from the backend (volume/vpool-delegate.ts: its own state
 *                              directory `<state>/delegated/<id>`, its owner-tag fence written first), and its
 *                              per-file calls routed here (router-link/vdisk-routes.ts) on every table of this router.
 *   vdiskApi, vdiskSnapshots   the owner's management API and snapshot schedule on a vDisk served here
 *                              (./delegate-calls.ts).
 *   vdiskReturn(id)            the owner takes it back: its calls here are held, it is shipped whole and closed
 *                              (DelegatedVDisk.close), then routed to the vPool's owner again (where they wait
 *                              until the owner serves it).
 *   the per-file calls          of the vPool owner's tables for the vDisks routed here (a RoutedTable over this
 *                              router's own: a call on a vDisk no longer served here goes on to the vPool's owner).
 *
 * A clean stop of this router hands its delegated vDisks back first as far as it can alone: each is shipped and
 * closed (its record stays, safe: the owner takes it back). So does this router becoming the vPool's owner
 * (closeAll, before the vPool opens: its owner start takes them back). Meanwhile each delegated vDisk's protection
 * (DTL mode and state, unshipped or not) is recorded in its record when it changes (what the owner judges a
 * takeback from a dead delegate by).
 */
import path from 'node:path';
import { buildHandlers, type Handlers, type MountHandlers } from '../../fuse/handlers.js';
import { E } from '../../fuse/errno.js';
import { confirmVDiskOwner, recordDelegatedVDisk } from '../../registry/vdisk-delegation.js';
import { WATCH_MS } from '../../registry/router-session.js';
import { protectionOf } from '../../registry/vpool-walk.js';
import type { RouterSession } from '../../registry/router-session.js';
import { LinkServer } from '../../router-link/server.js';
import { RoutedTable, type VDiskRoutes } from '../../router-link/vdisk-routes.js';
import { logger } from '../../util/log.js';
import { openBackend, readKeyFile } from '../../volume/backend/open-backend.js';
import type { BlobStore } from '../../volume/backend/types.js';
import { VDiskGate } from '../../volume/claim/vdisk-gate.js';
import { DelegatedVDisk } from '../../volume/vpool-delegate.js';
import { DelegatedVPool } from '../../volume/vpool-delegates.js';
import { parseHostPort, type ResolvedMount } from './config.js';
import { dtlForMount } from './dtl-mount.js';
import { delegateCalls } from './delegate-calls.js';
import { delegateHolders } from './vdisk-automove.js';

const log = logger('follower');

type Cb = (code: number, ...values: unknown[]) => void;

export class DelegateSide {
  readonly facade: DelegatedVPool;
  private readonly handlers: MountHandlers;
  private link!: LinkServer;
  private backend: Promise<BlobStore> | null = null;
  /** One change at a time (a serve and a return of one vDisk must not interleave). */
  private chain: Promise<unknown> = Promise.resolve();
  /** id → the protection last recorded in its vDisk record (JSON), and the watch that records it. */
  private readonly recorded = new Map<string, string>();
  private watchTimer: NodeJS.Timeout | null = null;
  private recording: Promise<void> | null = null;

  private constructor(private readonly cfg: ResolvedMount, private readonly session: RouterSession, private readonly routes: VDiskRoutes) {
    this.facade = new DelegatedVPool(cfg.vpool, cfg.router);
    this.handlers = buildHandlers(this.facade, cfg.mountpoint);
  }

  /** Listens (see the header) over `base`, this router's own table of the vPool, and records the address. */
  static async start(cfg: ResolvedMount, session: RouterSession, routes: VDiskRoutes, base: Handlers, secret: Buffer | undefined): Promise<DelegateSide> {
    const d = new DelegateSide(cfg, session, routes);
    const table = new RoutedTable(routes, base, undefined, false);
    const { host } = parseHostPort(cfg.peerListen ?? '127.0.0.1:0', '--peer-listen');
    const ops: Handlers = {
      ...table.ops,
      vdiskServe: (id: string, p: string, tag: number, cb: Cb) => d.run(`serving vDisk ${id}`, () => d.serve(id, p, tag), cb),
      vdiskReturn: (id: string, cb: Cb) => d.run(`handing vDisk ${id} back`, () => d.giveBack(id), cb),
      // who holds vDisk `p` open here (the owner's automatic move per vDisk): this router's mount, and the routers
      // on this link but the asker (it counts what it forwards itself)
      vdiskHolders: (p: string, asker: string, cb: Cb) => cb(0, delegateHolders(cfg.router, routes.handlesOf(p, table), d.link.holdersByPath().get(p), asker)),
      // the management API's routes and the snapshot schedule of the vPool's owner on the vDisks served here
      ...delegateCalls({ facade: d.facade, fds: d.handlers.fds, mountpoint: cfg.mountpoint, stateDir: cfg.state, backend: () => d.openBackend() }),
    };
    d.link = await LinkServer.start({ host, port: 0, secret, router: cfg.router, vpool: cfg.vpool, ops });
    await session.registry.update({ delegateAddress: d.link.address });
    d.watchTimer = setInterval(() => d.recordProtection(), WATCH_MS).unref();
    return d;
  }

  /** The handlers serving this router's delegated vDisks (the routes' local target). */
  get ops(): Handlers {
    return this.handlers.ops;
  }

  /**
   * Records each delegated vDisk's protection (DTL mode and state, unshipped or not) in its record when it
   * changed, as the vPool's owner does for its own (registry/router-session.ts, the same WATCH_MS): the owner
   * judges from it whether it may take the vDisk back by itself should this router die (returnVDisk fromDead).
   */
  private recordProtection(): void {
    this.recording ??= (async () => {
      const { cfg, session } = this;
      for (const [p, d] of this.facade.all()) {
        if (d.gate.fenced !== null) continue;
        const dtl = protectionOf(d.vdisk.info());
        const now = JSON.stringify(dtl);
        if (this.recorded.get(d.vdisk.id) === now) continue;
        if (await recordDelegatedVDisk(session.registry.client, cfg.vpool, d.vdisk.id, { router: cfg.router, tag: d.gate.tag }, dtl)) {
          this.recorded.set(d.vdisk.id, now);
        } else if (this.recorded.get(d.vdisk.id) !== 'lost') {
          this.recorded.set(d.vdisk.id, 'lost');
          log.warn(`the record of delegated vDisk ${p} is not this router's any more (owner tag ${d.gate.tag}): its protection is not recorded (its gate fences it at its next confirmation)`, { vdisk: d.vdisk.id, path: p });
        }
      }
    })().catch((err: unknown) => { log.warn('recording the protection of the delegated vDisks failed (etcd unreachable?); tried again', { error: String((err as Error).message ?? err) }); })
      .finally(() => { this.recording = null; });
  }

  private run(what: string, fn: () => Promise<void>, cb: Cb): void {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    p.then(() => cb(0), (err: unknown) => {
      log.error(`${what} failed`, { error: (err as Error).message });
      cb(E.EIO);
    });
  }

  private openBackend(): Promise<BlobStore> {
    this.backend ??= (async () => {
      const cfg = this.cfg;
      return openBackend(cfg.backend, {
        encryptionKey: cfg.encryptionKeyFile === undefined ? undefined : await readKeyFile(cfg.encryptionKeyFile),
        oldKeys: await Promise.all((cfg.oldEncryptionKeyFile ?? []).map((f) => readKeyFile(f))),
        localDir: cfg.state,
      });
    })();
    return this.backend;
  }

  private async serve(id: string, p: string, tag: number): Promise<void> {
    const { cfg, session } = this;
    if (this.facade.pathOf(id) !== undefined) return;
    const backend = await this.openBackend();
    const etcd = session.registry.client;
    const rec = session.registry.record;
    const gate = new VDiskGate(id, cfg.router, tag, () => confirmVDiskOwner(etcd, cfg.vpool, id, { router: cfg.router, tag }, rec.lease), rec.leaseSeconds * 1000);
    await gate.start();
    const d = await DelegatedVDisk.open({
      vpool: cfg.vpool, id, stateDir: path.join(cfg.state, 'delegated', id), backend, gate, routerId: cfg.router,
      scoClusters: cfg.scoClusters, tlogScos: cfg.tlogScos, writeCacheBytes: cfg.writeCacheBytes, readCacheBytes: cfg.readCacheBytes,
      checkpointEveryTlogs: cfg.checkpointEveryTlogs, scoMaxAgeMs: cfg.scoMaxAgeMs, dtl: dtlForMount(cfg),
    }).catch((err: unknown) => {
      gate.stop();
      throw err;
    });
    this.recorded.delete(id);
    this.facade.add(p, d);
    this.routes.set(p, this.handlers.ops);
    log.warn(`MOVE: serving vDisk ${p} of vPool '${cfg.vpool}' here (owner tag ${tag}): handed over by the vPool's owner`, { vpool: cfg.vpool, vdisk: id, path: p, tag });
  }

  private async giveBack(id: string): Promise<void> {
    const p = this.facade.pathOf(id);
    if (p === undefined) return; // not served here (a return asked twice)
    await this.routes.hold(p, `vDisk ${p} goes back to the vPool's owner`);
    const d = this.facade.remove(p)!;
    try {
      await d.close();
    } finally {
      this.routes.set(p, null);
    }
    log.warn(`MOVE: handed vDisk ${p} back to the vPool's owner: everything is in the backend`, { vpool: this.cfg.vpool, vdisk: id, path: p });
  }

  /**
   * This router becomes the vPool's owner (a takeover or a move in): each vDisk served here as a delegate is
   * shipped and closed first (its record stays this router's, safe: the owner's start takes it back, fenced);
   * its calls stay held until then.
   */
  async closeAll(why: string): Promise<void> {
    await (this.chain = this.chain.then(async () => {
      for (const [p, d] of this.facade.all()) {
        // held until the owner's start took it back (tools/daemon/vdisk-move.ts adopt: routes.set releases it)
        await this.routes.hold(p, why);
        this.facade.remove(p);
        try {
          await d.close();
          log.warn(`MOVE: closed delegated vDisk ${p}: ${why} (everything is in the backend; this router's start as the owner takes it back)`, { vpool: this.cfg.vpool, vdisk: d.vdisk.id, path: p });
        } catch (err) {
          log.error(`closing delegated vDisk ${p} failed: its unshipped writes stay in this router's write cache and DTL`, { path: p, error: String(err) });
        }
      }
    }).catch(() => undefined));
  }

  /** A clean stop: the link closes, each delegated vDisk is shipped and closed (the owner takes it back). */
  async stop(): Promise<void> {
    if (this.watchTimer !== null) clearInterval(this.watchTimer);
    await this.recording;
    await this.link.close().catch(() => undefined);
    await this.chain;
    for (const [p] of this.facade.all()) {
      await this.routes.hold(p, 'this router stops');
      await this.facade.remove(p)!.close().catch((err: unknown) => log.error('closing a delegated vDisk failed: its unshipped writes stay in this router\'s write cache', { path: p, error: String(err) }));
    }
    if (this.backend !== null) await (await this.backend).close().catch(() => undefined);
  }
}
