/**
 * The vPool's table of vDisks (volume/vpool.ts): the open ones by id, and those that could not be opened
 * with the cause every call on them fails with. Opening them all at the vPool's start, and removing one.
 * Ownership per vDisk (docs/cluster.md): a vDisk handed over to another router (delegate()) is closed here and
 * answers BUSY naming that router until it is taken back (takeBack(): rebuilt from the backend, its owner-tag
 * fence written first).
 */
import fs from 'node:fs';
import path from 'node:path';
import { VolumeError } from '../util/errors.js';
import { logger } from '../util/log.js';
import type { TreeShipper } from './tree/tree-shipper.js';
import type { Tree, TreeNode } from './tree/tree.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { vdiskMdsPrefix } from './vdisk/vdisk-meta.js';
import { openVDisk } from './vdisk/vdisk-open.js';
import type { VDiskImpl } from './vdisk/vdisk.js';

// the vPool's logger: these lines are the vPool's, as they were when this code was in vpool.ts
const log = logger('vpool');
/** vDisks opened at once at the vPool's start. */
const OPEN_CONCURRENCY = 4;

export class VDiskTable {
  /** id → open vDisk. */
  readonly open = new Map<string, VDiskImpl>();
  /** id → why the vDisk could not be opened: every call on it fails with this. */
  readonly broken = new Map<string, VolumeError>();
  /** id → the router it is delegated to, and what stat shows of it meanwhile (as it was handed over). */
  readonly delegated = new Map<string, Delegated>();
  /** id → the owner tag a takeBack() in progress opens it under (its fence: ../volume/datapath/epoch-fence.ts). */
  private readonly takingBack = new Map<string, number>();

  constructor(private readonly vpool: string, private readonly ctx: VDiskContext) {
    ctx.fenceTag = (id) => this.takingBack.get(id);
  }

  /**
   * Opens the vDisk of every file of `tree`, OPEN_CONCURRENCY at a time without a DTL (a rebuild from the
   * backend mostly waits on the backend and on fdatasyncs: one after the other, 10,000 vDisks took 3 minutes);
   * one that cannot open is recorded as broken, not thrown.
   */
  async openAll(tree: Tree): Promise<void> {
    // a vDisk delegated to another router is that router's: opened here only by takeBack(), fenced
    const nodes = tree.files().filter((n) => !this.delegated.has(n.vdiskId!));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < nodes.length) await this.openOne(tree, nodes[next++]);
    };
    // with a DTL, a recovery after the rebuild writes, and a partial write in a clone reads its ancestors: one
    // at a time in tree order, as before, so that opening is not racing that
    const at = this.ctx.dtl === undefined ? OPEN_CONCURRENCY : 1;
    await Promise.all(Array.from({ length: Math.min(at, nodes.length) }, worker));
  }

  private async openOne(tree: Tree, node: TreeNode): Promise<void> {
    try {
      this.open.set(node.vdiskId!, await openVDisk(node.vdiskId!, this.ctx));
    } catch (err) {
      // one vDisk that cannot open must not take the vPool down: it answers every call with the cause
      const cause = err instanceof VolumeError ? err : new VolumeError('BACKEND', `vDisk could not be opened: ${(err as Error).message}`, { vdisk: node.vdiskId }, { cause: err });
      this.broken.set(node.vdiskId!, cause);
      log.error('vDisk could not be opened; its calls fail until this is repaired', { vdisk: node.vdiskId, path: tree.pathOf(node), error: cause.message });
    }
  }

  /** The open vDisk behind file `node`; its cause if it could not be opened; BUSY if it is delegated. */
  of(node: TreeNode): VDiskImpl {
    const d = this.delegated.get(node.vdiskId!);
    if (d?.takeBackFailed !== undefined) throw new VolumeError('BUSY', `vDisk ${node.vdiskId} is being taken back from router '${d.router}' and could not be opened here yet (${d.takeBackFailed}): tried again until it opens`, { vdisk: node.vdiskId, router: d.router });
    if (d !== undefined) throw new VolumeError('BUSY', `vDisk ${node.vdiskId} is served by router '${d.router}': its I/O goes there`, { vdisk: node.vdiskId, router: d.router });
    const v = this.open.get(node.vdiskId!);
    const broken = this.broken.get(node.vdiskId!);
    if (broken !== undefined) throw broken;
    if (v === undefined) {
      // a file of the tree whose vDisk is neither open, broken nor delegated: answered ENOENT, which the FUSE layer
      // does not log (an ordinary miss) — said here, since nothing should lead to it
      log.warn('a file of the tree has no open vDisk: answered ENOENT', { vpool: this.vpool, vdisk: node.vdiskId, name: node.name });
      throw new VolumeError('NOT_FOUND', `vDisk ${node.vdiskId} is not open`, { vdisk: node.vdiskId });
    }
    return v;
  }

  /**
   * Hands vDisk `v` over (the caller has held its calls): everything shipped, a map checkpoint written (the new
   * owner's rebuild replays nothing), its DTL entries retired (none may be replayed over the new owner's data),
   * then closed and its local state dropped — the next open here is a rebuild from the backend.
   */
  async delegate(v: VDiskImpl, to: string, retireMs: number): Promise<void> {
    await v.syncToBackend();
    await v.checkpoints.flush();
    await v.dtl.retire(retireMs);
    this.delegated.set(v.id, { router: to, size: v.size, allocatedBytes: v.allocatedBytes, template: v.template });
    v.shutdown();
    this.open.delete(v.id);
    await this.dropLocal(v);
    log.info(`vDisk handed over to router '${to}': everything in the backend, closed here`, { vpool: this.vpool, vdisk: v.id, size: v.size });
  }

  /**
   * Marks the vDisks the registry records as delegated (id → router) before openAll(): they are not opened
   * (a start of the vPool's owner while a delegate serves them; docs/cluster.md "Ownership per vDisk").
   */
  async markDelegated(tree: Tree, delegated: ReadonlyMap<string, string>): Promise<void> {
    const ids = new Set(tree.files().map((n) => n.vdiskId!));
    for (const [id, router] of delegated) {
      if (!ids.has(id)) {
        log.warn('the registry records a delegated vDisk the tree does not have; ignored', { vpool: this.vpool, vdisk: id, router });
        continue;
      }
      this.delegated.set(id, { router, size: 0, allocatedBytes: 0, template: false });
      // the handover dropped it here after shipping it whole; whatever is left (a crash inside that step) is
      // stale: its delegate wrote since, and a takeBack() must rebuild it from the backend
      await this.ctx.mds.deletePrefix(vdiskMdsPrefix(id));
      fs.rmSync(path.join(this.ctx.writeCacheDir, id), { recursive: true, force: true });
      log.info(`vDisk delegated to router '${router}' (the registry's record): not opened here`, { vpool: this.vpool, vdisk: id, router });
    }
  }

  /**
   * Serves vDisk `id` here again under owner tag `tag` (its delegate closed it, or lost it): rebuilt from the
   * backend, fenced. A failure (the backend refusing meanwhile) leaves it delegated, its calls answering BUSY
   * with the cause; the caller tries again (tools/daemon/vdisk-move.ts): each try rebuilds from the backend again
   * (the rebuild drops what a failed one left) and numbers past the fence a failed one may have written.
   */
  async takeBack(id: string, tag: number): Promise<VDiskImpl> {
    const d = this.delegated.get(id);
    if (d === undefined) throw new VolumeError('INVALID', `vDisk ${id} is not delegated`, { vdisk: id });
    this.takingBack.set(id, tag);
    try {
      let v: VDiskImpl;
      try {
        v = await openVDisk(id, this.ctx);
      } catch (err) {
        d.takeBackFailed = (err as Error).message;
        throw err;
      }
      this.delegated.delete(id);
      this.open.set(id, v);
      log.info(`vDisk taken back from router '${d.router}': served here again (owner tag ${tag})`, { vpool: this.vpool, vdisk: id, size: v.size });
      return v;
    } finally {
      this.takingBack.delete(id);
    }
  }

  private async dropLocal(v: VDiskImpl): Promise<void> {
    this.ctx.space.release(v.localBytes);
    v.cache.destroy();
    await v.checkpoints.settled();
    await this.ctx.mds.deletePrefix(vdiskMdsPrefix(v.id));
  }

  /** Removes the vDisk behind `node` for good: closes it, drops its local files and metadata, hands its backend objects to the shipper for removal. */
  async drop(node: TreeNode, shipper: TreeShipper): Promise<void> {
    const id = node.vdiskId!;
    if (this.broken.delete(id)) {
      await this.ctx.mds.deletePrefix(vdiskMdsPrefix(id));
      fs.rmSync(path.join(this.ctx.writeCacheDir, id), { recursive: true, force: true });
      await shipper.removeVDisk(id);
      return;
    }
    const v = this.of(node);
    v.dtl.close(true); // its DTL entries go with it
    v.shutdown();
    this.open.delete(v.id);
    await this.dropLocal(v); // after the checkpoint being written: it must not land after the removal's listing
    this.ctx.readCache.invalidatePrefix(`vdisks/${v.id}/`);
    await shipper.removeVDisk(v.id);
    log.info('vDisk removed', { vpool: this.vpool, vdisk: v.id });
  }
}

/** A vDisk delegated to another router, as the vPool's holder knows it. */
export interface Delegated {
  router: string;
  size: number;
  allocatedBytes: number;
  template: boolean;
  /** Set while a takeBack() failed (why): the record is this router's, the vDisk not open yet. */
  takeBackFailed?: string;
}
