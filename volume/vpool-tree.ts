/**
 * The vPool's tree of directories and vDisk files, the base of VPoolImpl (vpool.ts): reading it (stat,
 * readdir, xattrs), changing it (mkdir, rmdir, create, unlink, rename, attributes, xattrs, the DTL mode of a
 * file), each change serialised, committed to the metadata store and shipped (change()); and what the
 * snapshots and clones need of it (snapshotHost(), ./snapshots/snapshot-host.ts).
 */
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { Serial } from '../util/serial.js';
import type { MetadataOp } from '../mds/types.js';
import { GC_PREFIX, TreeShipper } from './tree/tree-shipper.js';
import type { Tree, TreeNode } from './tree/tree.js';
import { createVDisk } from './vdisk/vdisk-open.js';
import { VDiskTable } from './vpool-vdisks.js';
import type { BackendClaim } from './claim/claim.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { vdiskMdsPrefix } from './vdisk/vdisk-meta.js';
import { setDtlMode } from './vdisk/dtl-hook.js';
import type { DtlMode } from './types.js';
import { SnapshotManager } from './snapshots/snapshots.js';
import type { SnapshotHost } from './snapshots/snapshot-host.js';
import { checkSize } from './vdisk/validate.js';
import type { AttrChange, NodeStat, VDisk } from './types.js';

const log = logger('vpool');

export abstract class VPoolTree {
  protected tree!: Tree;
  protected readonly disks: VDiskTable;
  protected shipper!: TreeShipper;
  /** Set once close() has begun: tree changes are refused from then on. */
  protected closing: Promise<void> | null = null;
  private readonly treeLock = new Serial();

  readonly snapshots: SnapshotManager;

  constructor(readonly name: string, protected readonly ctx: VDiskContext, protected readonly claim: BackendClaim) {
    this.disks = new VDiskTable(name, ctx);
    this.snapshots = new SnapshotManager(this.snapshotHost());
    ctx.family = this.snapshots;
  }

  /** What snapshots and clones (volume/snapshots/snapshots.ts) need of the tree and the vDisks. */
  private snapshotHost(): SnapshotHost {
    return {
      ctx: this.ctx,
      vdiskAt: (p) => this.disks.of(this.fileNode(p)),
      all: () => this.disks.open.values(),
      byId: (id) => this.disks.open.get(id),
      pathOf: (id) => {
        const node = this.tree.files().find((n) => n.vdiskId === id);
        return node === undefined ? undefined : this.tree.pathOf(node);
      },
      checkFree: (p) => void this.freeName(p),
      discard: (id) => this.shipper.removeVDisk(id),
      addVDisk: (p, like, v, extra) => this.change(async () => {
        const { dir, name } = this.freeName(p);
        const src = this.tree.lookup(like);
        const now = Date.now();
        const node = this.tree.add(dir, name, { kind: 'file', mode: src.mode, uid: src.uid, gid: src.gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {}, vdiskId: v.id });
        this.disks.open.set(v.id, v);
        this.touch(dir, now);
        return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp(), ...extra];
      }),
    };
  }

  /**
   * The vDisks whose backend namespaces are in use (the orphan gc, ./scrub/orphans.ts): every file of the tree,
   * every open vDisk, every pending creation or removal (`gc/<id>`: a clone being made commits it before its
   * first put), and the ancestors their docs name. Read under the tree's lock: a create in progress is either
   * done (its node counted) or not begun (nothing of it in the backend yet).
   */
  referencedVDisks(): Promise<Set<string>> {
    return this.treeLock.run(() => {
      const ids = new Set<string>(this.tree.files().map((n) => n.vdiskId!));
      for (const v of this.disks.open.values()) {
        ids.add(v.id);
        for (const a of v.docs.doc.ancestors) ids.add(a);
      }
      for (const [key] of this.ctx.mds.range(GC_PREFIX)) ids.add(key.slice(GC_PREFIX.length));
      return ids;
    });
  }

  /**
   * BUSY if `node` is, or holds, a vDisk delegated to another router: its owner knows it by the path it was
   * handed over under, so it is neither removed nor renamed until it is back (docs/cluster.md).
   */
  private checkNotDelegated(node: TreeNode, p: string): void {
    if (this.disks.delegated.size === 0) return;
    for (const f of node.kind === 'file' ? [node] : this.tree.files().filter((n) => this.tree.isWithin(n, node))) {
      const d = this.disks.delegated.get(f.vdiskId!);
      if (d !== undefined) throw new VolumeError('BUSY', `${this.tree.pathOf(f)} is served by router '${d.router}': move it back (vpoolfs move … --to the vPool's owner) before removing or renaming it`, { path: p, router: d.router });
    }
  }

  /** BUSY if the vDisk behind `node` has clones (it cannot be removed). */
  private checkNoClones(node: TreeNode, p: string): void {
    const v = this.disks.open.get(node.vdiskId!);
    if (v !== undefined && this.snapshots.hasClones(v)) throw new VolumeError('BUSY', `${p} has clones: remove them first`, { path: p, clones: this.snapshots.clonePaths(v) });
  }

  // ---- tree reads ------------------------------------------------------------------------------------

  stat(p: string): NodeStat {
    return this.statNode(this.tree.lookup(p));
  }

  readdir(p: string): string[] {
    const node = this.tree.lookup(p);
    if (node.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory: ${p}`, { path: p });
    return this.tree.childNames(node.ino);
  }

  vdisk(p: string): VDisk {
    return this.disks.of(this.fileNode(p));
  }

  getXattr(p: string, name: string): Buffer | undefined {
    const v = this.tree.lookup(p).xattrs[name];
    return v === undefined ? undefined : Buffer.from(v, 'base64');
  }

  listXattr(p: string): string[] {
    return Object.keys(this.tree.lookup(p).xattrs);
  }

  // ---- tree changes (serialised) ---------------------------------------------------------------------

  mkdir(p: string, mode: number, uid: number, gid: number): Promise<void> {
    return this.change(async () => {
      const { dir, name } = this.freeName(p);
      const now = Date.now();
      const node = this.tree.add(dir, name, { kind: 'dir', mode: 0o40000 | (mode & 0o7777), uid, gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {} });
      this.touch(dir, now);
      return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp()];
    });
  }

  rmdir(p: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (node.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory: ${p}`, { path: p });
      if (node.parent === 0) throw new VolumeError('BUSY', 'the vPool root cannot be removed', { path: p });
      if (this.tree.childCount(node.ino) > 0) throw new VolumeError('NOT_EMPTY', `directory not empty: ${p}`, { path: p });
      const dir = this.tree.get(node.parent)!;
      this.tree.remove(node);
      this.touch(dir, Date.now());
      return [this.tree.deleteOp(node), this.tree.putOp(dir)];
    });
  }

  createFile(p: string, mode: number, uid: number, gid: number, size = 0): Promise<void> {
    return this.change(async () => {
      checkSize(size, { path: p });
      const { dir, name } = this.freeName(p);
      const id = randomUUID();
      const v = await createVDisk(id, this.ctx);
      try {
        if (size > 0) await v.resize(size);
      } catch (err) {
        v.shutdown();
        v.cache.destroy();
        await this.ctx.mds.deletePrefix(vdiskMdsPrefix(id));
        throw err;
      }
      this.disks.open.set(id, v);
      const now = Date.now();
      const node = this.tree.add(dir, name, { kind: 'file', mode: 0o100000 | (mode & 0o7777), uid, gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {}, vdiskId: id });
      this.touch(dir, now);
      log.info('vDisk created', { vpool: this.name, path: p, vdisk: id, size });
      return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp()];
    });
  }

  unlink(p: string): Promise<void> {
    return this.change(async () => {
      const node = this.fileNode(p);
      this.checkNoClones(node, p);
      this.checkNotDelegated(node, p);
      const dir = this.tree.get(node.parent)!;
      this.tree.remove(node);
      this.touch(dir, Date.now());
      await this.ctx.mds.commit([this.tree.deleteOp(node), this.tree.putOp(dir)]);
      await this.disks.drop(node, this.shipper);
      return [];
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(from);
      if (node.parent === 0) throw new VolumeError('BUSY', 'the vPool root cannot be renamed', { path: from });
      this.checkNotDelegated(node, from);
      const { dir, name } = this.tree.parentOf(to);
      if (this.tree.isWithin(dir, node)) throw new VolumeError('INVALID', `cannot move ${from} into itself`, { from, to });
      const ops: MetadataOp[] = [];
      const target = this.tree.child(dir.ino, name);
      if (target !== undefined && target.ino === node.ino) return [];
      if (target !== undefined) {
        if (target.kind === 'dir' && node.kind !== 'dir') throw new VolumeError('IS_DIR', `${to} is a directory`, { from, to });
        if (target.kind !== 'dir' && node.kind === 'dir') throw new VolumeError('NOT_DIR', `${to} is not a directory`, { from, to });
        if (target.kind === 'dir' && this.tree.childCount(target.ino) > 0) throw new VolumeError('NOT_EMPTY', `${to} is not empty`, { from, to });
        if (target.kind === 'file') this.checkNoClones(target, to);
        this.checkNotDelegated(target, to);
        this.tree.remove(target);
        ops.push(this.tree.deleteOp(target));
        if (target.kind === 'file') await this.disks.drop(target, this.shipper);
      }
      const oldDir = this.tree.get(node.parent)!;
      this.tree.move(node, dir, name);
      const now = Date.now();
      node.ctimeMs = now;
      this.touch(oldDir, now);
      this.touch(dir, now);
      ops.push(this.tree.putOp(node), this.tree.putOp(oldDir), this.tree.putOp(dir));
      return ops;
    });
  }

  setAttrs(p: string, change: AttrChange): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (change.mode !== undefined && change.mode & 0o222 && node.kind === 'file' && this.disks.of(node).template) {
        throw new VolumeError('READ_ONLY', `${p} is a template: read-only, its mode takes no write bits`, { path: p, mode: change.mode });
      }
      if (change.mode !== undefined) node.mode = (node.mode & ~0o7777) | (change.mode & 0o7777);
      if (change.uid !== undefined && change.uid >= 0) node.uid = change.uid;
      if (change.gid !== undefined && change.gid >= 0) node.gid = change.gid;
      if (change.atimeMs !== undefined) node.atimeMs = change.atimeMs;
      if (change.mtimeMs !== undefined) node.mtimeMs = change.mtimeMs;
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  setXattr(p: string, name: string, value: Uint8Array): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      node.xattrs[name] = Buffer.from(value).toString('base64');
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  removeXattr(p: string, name: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (!(name in node.xattrs)) throw new VolumeError('NOT_FOUND', `no attribute ${name} on ${p}`, { path: p, name });
      delete node.xattrs[name];
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  setDtlMode(p: string, mode: DtlMode): Promise<void> {
    return setDtlMode(this.disks.of(this.fileNode(p)), mode);
  }

  // ---- helpers ----------------------------------------------------------------------------------------

  /** Runs a tree change alone, persists the operations it returns, then ships the tree. */
  private change(fn: () => Promise<MetadataOp[]>): Promise<void> {
    if (this.closing !== null) return Promise.reject(new VolumeError('CLOSED', 'the vPool is closing'));
    if (this.claim.fenced !== null) return Promise.reject(new VolumeError('FENCED', `this router lost its claim on the vPool: ${this.claim.fenced}`));
    return this.treeLock.run(async () => {
      const ops = await fn();
      if (ops.length > 0) {
        await this.ctx.mds.commit(ops);
      }
      this.shipper.changed();
    });
  }

  protected freeName(p: string): { dir: TreeNode; name: string } {
    const { dir, name } = this.tree.parentOf(p);
    if (this.tree.child(dir.ino, name) !== undefined) throw new VolumeError('EXISTS', `already exists: ${p}`, { path: p });
    return { dir, name };
  }

  protected fileNode(p: string): TreeNode {
    const node = this.tree.lookup(p);
    if (node.kind !== 'file') throw new VolumeError('IS_DIR', `is a directory: ${p}`, { path: p });
    return node;
  }

  private touch(dir: TreeNode, now: number): void {
    dir.mtimeMs = now;
    dir.ctimeMs = now;
  }

  private statNode(node: TreeNode): NodeStat {
    const base = { ino: node.ino, mode: node.mode, uid: node.uid, gid: node.gid, atimeMs: node.atimeMs, mtimeMs: node.mtimeMs, ctimeMs: node.ctimeMs };
    if (node.kind === 'dir') return { ...base, kind: 'dir', size: 4096, allocatedBytes: 4096, nlink: 2 };
    const d = this.disks.delegated.get(node.vdiskId!);
    const v = d ?? this.disks.of(node); // a delegated vDisk: as it was handed over (its owner answers its own stat)
    // a template is read-only (EROFS on write): its mode says so, whatever was set before
    const mode = v.template ? base.mode & ~0o222 : base.mode;
    return { ...base, mode, kind: 'file', size: v.size, allocatedBytes: v.allocatedBytes, nlink: 1 };
  }
}
