/**
 * The vPool's directory tree: directories and vDisks (regular files), with their attributes and plain
 * xattrs. Held in memory; each change is persisted to the metadata store as the changed nodes
 * (`tree/<ino>`), and the whole tree is shipped to the backend (`pool/tree.json`) so a vPool can be
 * brought up from the backend alone.
 */
import { VolumeError } from '../../util/errors.js';
import type { MetadataOp, MetadataStore } from '../../mds/types.js';

export interface TreeNode {
  ino: number;
  kind: 'file' | 'dir';
  name: string;
  parent: number;
  mode: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Plain xattrs, values base64. */
  xattrs: Record<string, string>;
  /** For a file: the vDisk behind it. */
  vdiskId?: string;
}

export interface TreeDump {
  version: 1;
  nextIno: number;
  nodes: TreeNode[];
}

export const ROOT_INO = 1;
const NODE_PREFIX = 'tree/node/';
const NEXT_INO_KEY = 'tree/next-ino';
const nodeKey = (ino: number): string => NODE_PREFIX + ino.toString(16).padStart(12, '0');

export class Tree {
  private readonly nodes = new Map<number, TreeNode>();
  private readonly children = new Map<number, Map<string, number>>();
  nextIno = ROOT_INO + 1;

  static empty(now = Date.now()): Tree {
    const t = new Tree();
    t.insert({ ino: ROOT_INO, kind: 'dir', name: '', parent: 0, mode: 0o40755, uid: 0, gid: 0, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {} });
    return t;
  }

  static fromDump(d: TreeDump): Tree {
    if (d.version !== 1 || !Array.isArray(d.nodes)) throw new VolumeError('INVALID', 'unknown tree format', { version: d.version });
    const t = new Tree();
    for (const n of [...d.nodes].sort((a, b) => a.ino - b.ino)) t.insert(n);
    for (const n of d.nodes) if (n.ino !== ROOT_INO) t.childrenOf(n.parent).set(n.name, n.ino);
    t.nextIno = d.nextIno;
    return t;
  }

  static load(mds: MetadataStore): Tree | null {
    const next = mds.get(NEXT_INO_KEY);
    if (next === undefined) return null;
    const nodes: TreeNode[] = [];
    for (const [, v] of mds.range(NODE_PREFIX)) nodes.push(JSON.parse(v.toString()) as TreeNode);
    return Tree.fromDump({ version: 1, nextIno: Number(next.toString()), nodes });
  }

  dump(): TreeDump {
    return { version: 1, nextIno: this.nextIno, nodes: [...this.nodes.values()] };
  }

  /** Operations that persist the whole tree (first start, rebuild). */
  allOps(): MetadataOp[] {
    const ops: MetadataOp[] = [...this.nodes.values()].map((n) => this.putOp(n));
    ops.push({ key: NEXT_INO_KEY, value: Buffer.from(String(this.nextIno)) });
    return ops;
  }

  putOp(n: TreeNode): MetadataOp {
    return { key: nodeKey(n.ino), value: Buffer.from(JSON.stringify(n)) };
  }

  deleteOp(n: TreeNode): MetadataOp {
    return { key: nodeKey(n.ino), value: null };
  }

  nextInoOp(): MetadataOp {
    return { key: NEXT_INO_KEY, value: Buffer.from(String(this.nextIno)) };
  }

  get(ino: number): TreeNode | undefined {
    return this.nodes.get(ino);
  }

  files(): TreeNode[] {
    return [...this.nodes.values()].filter((n) => n.kind === 'file');
  }

  get size(): number {
    return this.nodes.size;
  }

  /** The node at `path`; NOT_FOUND or NOT_DIR on the way. */
  lookup(path: string): TreeNode {
    let node = this.nodes.get(ROOT_INO)!;
    for (const name of splitPath(path)) {
      if (node.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory on the way to ${path}`, { path });
      const ino = this.children.get(node.ino)?.get(name);
      if (ino === undefined) throw new VolumeError('NOT_FOUND', `no such file or directory: ${path}`, { path });
      node = this.nodes.get(ino)!;
    }
    return node;
  }

  /** The directory that holds `path`, and the last name; INVALID for the root. */
  parentOf(path: string): { dir: TreeNode; name: string } {
    const parts = splitPath(path);
    if (parts.length === 0) throw new VolumeError('INVALID', 'the root has no parent', { path });
    const name = parts.pop()!;
    const dir = this.lookup('/' + parts.join('/'));
    if (dir.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory: /${parts.join('/')}`, { path });
    return { dir, name };
  }

  childNames(ino: number): string[] {
    return [...(this.children.get(ino)?.keys() ?? [])];
  }

  childCount(ino: number): number {
    return this.children.get(ino)?.size ?? 0;
  }

  child(dirIno: number, name: string): TreeNode | undefined {
    const ino = this.children.get(dirIno)?.get(name);
    return ino === undefined ? undefined : this.nodes.get(ino);
  }

  /** Adds a new node under `dir`; returns it. */
  add(dir: TreeNode, name: string, fields: Omit<TreeNode, 'ino' | 'name' | 'parent'>): TreeNode {
    const node: TreeNode = { ...fields, ino: this.nextIno++, name, parent: dir.ino };
    this.insert(node);
    this.childrenOf(dir.ino).set(name, node.ino);
    return node;
  }

  remove(node: TreeNode): void {
    this.children.get(node.parent)?.delete(node.name);
    this.nodes.delete(node.ino);
    this.children.delete(node.ino);
  }

  move(node: TreeNode, dir: TreeNode, name: string): void {
    this.children.get(node.parent)?.delete(node.name);
    node.parent = dir.ino;
    node.name = name;
    this.childrenOf(dir.ino).set(name, node.ino);
  }

  /** True if `maybe` is `node` or lies below it. */
  isWithin(maybe: TreeNode, node: TreeNode): boolean {
    for (let n: TreeNode | undefined = maybe; n !== undefined; n = n.parent === 0 ? undefined : this.nodes.get(n.parent)) {
      if (n.ino === node.ino) return true;
    }
    return false;
  }

  pathOf(node: TreeNode): string {
    const parts: string[] = [];
    for (let n: TreeNode | undefined = node; n !== undefined && n.ino !== ROOT_INO; n = this.nodes.get(n.parent)) parts.unshift(n.name);
    return '/' + parts.join('/');
  }

  private insert(n: TreeNode): void {
    this.nodes.set(n.ino, n);
    if (n.kind === 'dir' && !this.children.has(n.ino)) this.children.set(n.ino, new Map());
  }

  private childrenOf(ino: number): Map<string, number> {
    let m = this.children.get(ino);
    if (m === undefined) {
      m = new Map();
      this.children.set(ino, m);
    }
    return m;
  }
}

/** Splits an absolute vPool path into names; rejects empty, `.`/`..`, NUL and over-long names. */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new VolumeError('INVALID', `not an absolute vPool path: ${String(path)}`, { path });
  const parts = path.split('/').filter((p) => p.length > 0);
  for (const p of parts) {
    if (p === '.' || p === '..' || p.includes('\0')) throw new VolumeError('INVALID', `bad path component in ${path}`, { path });
    if (Buffer.byteLength(p) > 255) throw new VolumeError('NAME_TOO_LONG', `a name in ${path.slice(0, 80)}… is longer than 255 bytes`, { path });
  }
  return parts;
}
