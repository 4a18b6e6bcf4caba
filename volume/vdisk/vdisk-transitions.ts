/**
 * The state changes others ask of a vDisk, each named for what happens: the opening (vdisk-open.ts,
 * snapshot-open.ts: a local restart's corked state, a rebuild's lineage and cork point), snapshots
 * (../snapshots/snapshots.ts: a rollback, a template), clones (../snapshots/clone.ts: a clone's start) and
 * the DTL (dtl-hook.ts: its sink). The part of VDiskImpl (vdisk.ts) between its state and its write path.
 */
import type { MetadataOp } from '../../mds/types.js';
import { SLOT_SIZE } from '../datapath/formats/sco-format.js';
import type { DtlSink } from './dtl-sink.js';
import { docShippedKey, rollbackKey, type VDiskDoc } from '../lineage/snapshot-store.js';
import { commitCork, corkOps, metaKey, type VDiskMeta } from './vdisk-meta.js';
import { baseKey, decodeBaseInto, loadBase, type DiskState } from '../lineage/clone-base.js';
import { SCRUB_SCO_BASE } from '../lineage/scrub-state.js';
import { VDiskState } from './vdisk-state.js';

export abstract class VDiskTransitions extends VDiskState {
  // ---- state changes others ask for: opening, snapshots, clones, the DTL ----------------------------

  /** Local restart (vdisk-open.ts): the size, template flag and cork point of the metadata store's record. */
  restoreCorked(meta: VDiskMeta): void {
    this.readerView.change(() => (this.disk.size = meta.size));
    this.state.template = meta.template || this.docs.doc.template; // a cork racing with user.vdisk.template may have written the old flag
    this.state.corkedTlog = meta.corkedTlog;
    this.state.corkedSco = meta.corkedSco;
  }

  /**
   * Local restart, once the map and slot counts are back (vdisk-open.ts): counts the SCO files found in the
   * write cache (the corked ones evictable) and the bytes in the backend.
   */
  countRestartedBytes(): void {
    for (const sco of this.cache.localScos()) {
      const bytes = (this.scoCounts.get(sco) ?? 0) * SLOT_SIZE;
      this.state.localBytes += bytes;
      this.ctx.space.account(bytes);
      if (sco <= this.corkedSco) this.ctx.space.addEvictable(this, sco);
    }
    for (const [sco, count] of this.scoCounts) if (sco <= this.corkedSco || sco >= SCRUB_SCO_BASE) this.state.backendBytes += count * SLOT_SIZE;
  }

  /**
   * Rebuild from the backend, before the TLogs are replayed (snapshot-open.ts): the template flag of the
   * doc just loaded from the backend, and a clone's base (its parent's map as of the snapshot) under the map.
   */
  async restoreLineage(): Promise<void> {
    const doc = this.docs.doc;
    this.state.template = doc.template;
    if (doc.parent !== null) {
      const s: DiskState = { map: this.map, size: 0, scoCounts: new Map() };
      await loadBase(this.ctx.backend, this.id, s);
      this.readerView.change(() => (this.disk.size = s.size));
    }
  }

  /**
   * Rebuild from the backend, in place of replaying the chain items it covers: the state of a map checkpoint
   * (../lineage/map-checkpoint.ts; a clone's holds its base's entries). Its pages count as changed, so the
   * rebuild's commit persists them.
   */
  adoptCheckpoint(s: DiskState): void {
    this.map.clearFrom(0);
    const pages: number[] = [];
    for (const [pageNo, page] of s.map.rawPages()) {
      this.map.loadPage(pageNo, page);
      pages.push(pageNo);
    }
    this.map.markDirty(pages);
    this.scoCounts.clear();
    for (const [sco, count] of s.scoCounts) this.scoCounts.set(sco, count);
    this.disk.size = s.size;
  }

  /** Rebuild from the backend, once replayed (vdisk-open.ts): all of it is in the backend, corked up to here. */
  corkRebuilt(lastSco: number, lastTlog: number): void {
    for (const count of this.scoCounts.values()) this.state.backendBytes += count * SLOT_SIZE;
    this.state.corkedSco = lastSco;
    this.state.corkedTlog = lastTlog;
  }

  /**
   * Makes this vDisk a template whose doc is `next` (../snapshots/snapshots.ts, under the lock). The flag is
   * set first, so that every cork from now on persists it too (the doc has it as well: opening takes
   * either); a failed commit clears it again.
   */
  async becomeTemplate(next: VDiskDoc): Promise<void> {
    this.state.template = true;
    const meta: VDiskMeta = { corkedTlog: this.corkedTlog, corkedSco: this.corkedSco, size: this.size, template: true };
    try {
      await this.docs.commit(next, [{ key: metaKey(this.id), value: Buffer.from(JSON.stringify(meta)) }]);
    } catch (err) {
      this.state.template = false;
      throw err;
    }
  }

  /**
   * The end of a rollback (../snapshots/snapshots.ts, under the lock, its intent recorded and `doc` shipped):
   * the map, size and slot counts become `at` (the state as of the snapshot), committed at once with `doc`
   * and the removal of the intent.
   */
  async adoptRollback(at: DiskState, doc: VDiskDoc): Promise<void> {
    this.readerView.change(() => {
      this.map.clearFrom(0);
      for (const [a, loc] of at.map.entries()) this.map.set(a, loc.sco, loc.slot, loc.depth);
      this.disk.size = at.size;
    });
    for (const [sco, count] of at.scoCounts) this.scoCounts.set(sco, count);
    await this.commitShippedState(doc, [{ key: rollbackKey(this.id), value: null }]);
    this.checkpoints.chainChanged(); // checkpoints past the snapshot no longer fit the chain (checkpointer.ts)
  }

  /**
   * A new clone's start (../snapshots/clone.ts; `doc`, naming its parent, already shipped): its map is the
   * `base` (the parent's as of the snapshot, one clone depth deeper) and its size `size`, committed with `doc`.
   */
  async startAsClone(base: Buffer, size: number, doc: VDiskDoc): Promise<void> {
    this.readerView.change(() => {
      decodeBaseInto(base, { map: this.map, size: 0, scoCounts: this.scoCounts }, baseKey(this.id));
      this.disk.size = size;
    });
    await this.commitShippedState(doc, []);
  }

  /** Commits the map, size and `doc` (in the backend already: generation doc.gen shipped) with `extra`; then `doc` is the vDisk's. */
  private async commitShippedState(doc: VDiskDoc, extra: MetadataOp[]): Promise<void> {
    const ops = corkOps(this, { tlog: this.corkedTlog, scos: [] });
    ops.push(...this.docs.ops(doc), { key: docShippedKey(this.id), value: Buffer.from(String(doc.gen)) }, ...extra);
    await commitCork(this.ctx.mds, this, ops);
    this.docs.doc = doc;
    this.docs.shippedGen = doc.gen;
  }

  /** The DTL sink of the vDisk's mode, once opened or created (dtl-hook.ts). */
  attachDtl(sink: DtlSink): void {
    this.state.dtl = sink;
  }

  /** A change of DTL mode (dtl-hook.ts, under the lock): the sink closes (`forget`: its copy is dropped), then `next()` takes over. */
  replaceDtl(forget: boolean, next: () => DtlSink): void {
    this.state.dtl.close(forget);
    this.state.dtl = next();
  }
}
