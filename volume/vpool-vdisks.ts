/**
 * The vPool's table of vDisks (volume/vpool.ts): the open ones by id, and those that could not be opened
 * with the cause every call on them fails with. Opening them all at the vPool's start, and removing one.
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

  constructor(private readonly vpool: string, private readonly ctx: VDiskContext) {}

  /**
   * Opens the vDisk of every file of `tree`, OPEN_CONCURRENCY at a time without a DTL (a rebuild from the
   * backend mostly waits on the backend and on fdatasyncs: one after the other, 10,000 vDisks took 3 minutes);
   * one that cannot open is recorded as broken, not thrown.
   */
  async openAll(tree: Tree): Promise<void> {
    const nodes = tree.files();
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

  /** The open vDisk behind file `node`; its cause if it could not be opened. */
  of(node: TreeNode): VDiskImpl {
    const v = this.open.get(node.vdiskId!);
    const broken = this.broken.get(node.vdiskId!);
    if (broken !== undefined) throw broken;
    if (v === undefined) throw new VolumeError('NOT_FOUND', `vDisk ${node.vdiskId} is not open`, { vdisk: node.vdiskId });
    return v;
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
    this.ctx.space.release(v.localBytes);
    v.cache.destroy();
    await v.checkpoints.settled(); // a map checkpoint being written must not land after the removal's listing
    await this.ctx.mds.deletePrefix(vdiskMdsPrefix(v.id));
    this.ctx.readCache.invalidatePrefix(`vdisks/${v.id}/`);
    await shipper.removeVDisk(v.id);
    log.info('vDisk removed', { vpool: this.vpool, vdisk: v.id });
  }
}
