/**
 * One vDisk of a vPool served by a router that does not hold the vPool (docs/cluster.md, "Ownership per
 * vDisk"): the vPool's holder handed it over (VPool.handOverVDisk: shipped whole, closed there) and the
 * registry records this router as its owner under a new owner tag. Here it is opened with this router's own
 * state directory for it — its own metadata store, write cache and read cache — and without the vPool's
 * backend claim: every backend write of it passes the vDisk's gate instead (./claim/vdisk-gate.ts: the
 * registry confirms the ownership within half its lease), and before it serves anything its rebuild from the
 * backend writes its owner-tag fence (./datapath/epoch-fence.ts), so that a router that lost it — the one
 * before, or this one later — changes nothing the next owner serves.
 *
 * Always a rebuild from the backend: the handover shipped everything, and a local state left from an earlier
 * delegation is stale (others served the vDisk since). close() hands it back the same way: shipped,
 * checkpointed, its DTL retired, closed.
 *
 * Its snapshots are its own document (./lineage/snapshot-store.ts, shipped with it): create, list, sticky, delete
 * and rollback run here (`snapshots`, over ./snapshots/sole-host.ts), and survive the moves both ways (the
 * handover and close() ship the document; each open rebuilds it from the backend). `scrub` only says how its last
 * scrub went (`user.vdisk.info`, from the copy the rebuild restored): no scrub of a delegated vDisk runs — the
 * vPool's owner leaves it alone, and this router does not scrub.
 */
import fs from 'node:fs';
import path from 'node:path';
import { logger } from '../util/log.js';
import { openMetadataStore } from '../mds/index.js';
import type { BlobStore } from './backend/types.js';
import { FencedStore } from './claim/fenced-store.js';
import type { VDiskGate } from './claim/vdisk-gate.js';
import { withShipProgress } from './datapath/upload/ship-progress.js';
import { vdiskContext, type ContextTuning } from './vpool-context.js';
import { vdiskMdsPrefix } from './vdisk/vdisk-meta.js';
import { openVDisk } from './vdisk/vdisk-open.js';
import type { VDiskImpl } from './vdisk/vdisk.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { ScrubManager } from './scrub/manager.js';
import { soleVDiskHost } from './snapshots/sole-host.js';
import { SnapshotManager } from './snapshots/snapshots.js';

const log = logger('vpool');
const DTL_RETIRE_MS = 10_000;

export interface DelegatedVDiskOptions extends ContextTuning {
  vpool: string;
  id: string;
  /** This router's state directory for this vDisk (created if missing; its earlier content is discarded). */
  stateDir: string;
  /** The vPool's backend, opened (not closed by close()). */
  backend: BlobStore;
  /** The vDisk's gate, started: the registry confirmed this router owns the vDisk under `gate.tag`. */
  gate: VDiskGate;
  routerId: string;
  /** How long a dirty SCO may stay open before it is shipped (ms, default 5000). */
  scoMaxAgeMs?: number;
}

export class DelegatedVDisk {
  private ticker: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  /** Its snapshots (create, list, sticky, delete, rollback): the same code as on the vPool's owner. */
  readonly snapshots: SnapshotManager;
  /** Only for statusAt() (its last scrub, from the backend's copy): nothing scrubs a delegated vDisk. */
  readonly scrub: ScrubManager;

  private constructor(readonly vpool: string, readonly vdisk: VDiskImpl, private readonly ctx: VDiskContext, readonly gate: VDiskGate, scoMaxAgeMs: number, stateDir: string) {
    this.snapshots = new SnapshotManager(soleVDiskHost(vdisk, ctx));
    this.scrub = new ScrubManager({
      backend: ctx.backend, scratchDir: path.join(stateDir, 'scrub'), scoClusters: ctx.scoClusters,
      vdiskAt: () => vdisk, all: () => [vdisk], allIds: () => [vdisk.id], cloning: () => false,
      referenced: () => Promise.resolve(new Set([vdisk.id])),
    });
    gate.onFenced(() => {
      vdisk.uploader.stop();
      vdisk.readerView.close();
    });
    // the write cache full: ship what is pending so that its SCOs become evictable (as the vPool does for its own)
    ctx.space.onPressure = () => {
      if (vdisk.cache.hasPending) this.shipQuietly('write-cache pressure');
    };
    this.ticker = setInterval(() => {
      ctx.space.recheck();
      if (vdisk.cache.hasPending && Date.now() - vdisk.lastShipMs >= scoMaxAgeMs) this.shipQuietly('age');
    }, Math.min(1000, scoMaxAgeMs)).unref();
  }

  /** ship() from a timer or the space accounting: a failure (ENOSPC, EIO) is logged, tried again later, never thrown there. */
  private shipQuietly(why: string): void {
    try {
      this.vdisk.ship();
    } catch (err) {
      log.warn('closing the open TLog of a delegated vDisk failed; tried again later', { vdisk: this.vdisk.id, why, error: (err as Error).message });
    }
  }

  static async open(opts: DelegatedVDiskOptions): Promise<DelegatedVDisk> {
    const stateDir = path.resolve(opts.stateDir);
    fs.mkdirSync(stateDir, { recursive: true });
    const mds = openMetadataStore('lmdb', path.join(stateDir, 'mds'));
    try {
      const { gate } = opts;
      const ctx = vdiskContext(stateDir, new FencedStore(opts.backend, gate), mds, opts.routerId, opts, {
        fenced: () => gate.fenced,
        fenceTag: (id) => (id === opts.id ? gate.tag : undefined),
      });
      // whatever this directory held of the vDisk is stale: others served it since
      await mds.deletePrefix(vdiskMdsPrefix(opts.id));
      fs.rmSync(path.join(ctx.writeCacheDir, opts.id), { recursive: true, force: true });
      const v = await openVDisk(opts.id, ctx);
      if (v.docs.doc.parent !== null) {
        v.shutdown();
        throw new Error(`vDisk ${opts.id} is a clone: it is served with its family by the vPool's owner`);
      }
      log.info(`serving vDisk ${opts.id} of vPool '${opts.vpool}' here (owner tag ${gate.tag}), delegated by the vPool's owner`, { vdisk: opts.id, size: v.size });
      return new DelegatedVDisk(opts.vpool, v, ctx, gate, opts.scoMaxAgeMs ?? 5000, stateDir);
    } catch (err) {
      await mds.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Hands the vDisk back (the caller has held its calls): everything in the backend, a map checkpoint, its DTL
   * retired, closed. Fenced meanwhile: closed without shipping (nothing would count).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.ticker !== null) clearInterval(this.ticker);
      const v = this.vdisk;
      if (this.gate.fenced === null) {
        await withShipProgress(this.vpool, [v], () => v.syncToBackend(), `delegated vDisk ${v.id} to the backend`);
        await v.checkpoints.flush();
        await v.dtl.retire(DTL_RETIRE_MS);
      }
      this.gate.stop();
      v.shutdown();
      this.ctx.readCache.close();
      await this.ctx.mds.close();
      log.info(this.gate.fenced === null ? `delegated vDisk ${v.id} closed: everything is in the backend` : `delegated vDisk ${v.id} closed without shipping: this router had lost it`, { vdisk: v.id, fenced: this.gate.fenced });
    })();
    return this.closing;
  }
}
