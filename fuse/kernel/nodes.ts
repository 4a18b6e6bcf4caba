/**
 * The node table of the kernel engine: the kernel names files by node id, the handlers by path.
 * Every entry reply (LOOKUP, CREATE, MKNOD, MKDIR) hands the kernel one reference to a node id
 * ("lookup count"); FORGET / BATCH_FORGET give them back, and a node is dropped when its count reaches 0.
 * A path has at most one live node; rename moves a node (and everything below a directory), unlink/rmdir
 * detach it: a detached node answers ENOENT (its path may be reused by a new file with a new node id).
 * Root is node 1 and is never forgotten.
 */
import { ROOT_ID } from './protocol.js';

interface Node {
  id: number;
  /** The vPool path, or undefined once unlinked / replaced. */
  path: string | undefined;
  lookups: number;
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

export class Nodes {
  private readonly byId = new Map<number, Node>();
  private readonly byPath = new Map<string, Node>();
  private nextId = ROOT_ID + 1;

  constructor() {
    const root: Node = { id: ROOT_ID, path: '/', lookups: Infinity };
    this.byId.set(ROOT_ID, root);
    this.byPath.set('/', root);
  }

  /** The path of `nodeid`, or undefined for an unknown or detached node. */
  path(nodeid: number): string | undefined {
    return this.byId.get(nodeid)?.path;
  }

  /** The path of `name` in directory `parent`, or undefined when the parent is unknown or detached. */
  child(parent: number, name: string): string | undefined {
    const dir = this.path(parent);
    return dir === undefined ? undefined : joinPath(dir, name);
  }

  /** The kernel got an entry for `path`: its node id, created if new, with one more reference. */
  remember(path: string): number {
    let n = this.byPath.get(path);
    if (n === undefined) {
      n = { id: this.nextId++, path, lookups: 0 };
      this.byId.set(n.id, n);
      this.byPath.set(path, n);
    }
    n.lookups++;
    return n.id;
  }

  /** The node id of `path` if the kernel knows it (no new reference). */
  idOf(path: string): number | undefined {
    return this.byPath.get(path)?.id;
  }

  /** FORGET: the kernel drops `count` references. */
  forget(nodeid: number, count: number): void {
    const n = this.byId.get(nodeid);
    if (n === undefined || nodeid === ROOT_ID) return;
    n.lookups -= count;
    if (n.lookups > 0) return;
    this.byId.delete(nodeid);
    if (n.path !== undefined && this.byPath.get(n.path) === n) this.byPath.delete(n.path);
  }

  /** unlink / rmdir succeeded: the node at `path` no longer has a name. */
  detach(path: string): void {
    const n = this.byPath.get(path);
    if (n === undefined) return;
    this.byPath.delete(path);
    n.path = undefined;
  }

  /** rename succeeded: whatever was at `to` is detached, `from` (and, for a directory, everything below) moves. */
  rename(from: string, to: string): void {
    this.detach(to);
    const prefix = from + '/';
    const moved: Node[] = [];
    for (const [p, n] of this.byPath) if (p === from || p.startsWith(prefix)) moved.push(n);
    for (const n of moved) this.byPath.delete(n.path!);
    for (const n of moved) {
      n.path = to + n.path!.slice(from.length);
      this.byPath.set(n.path, n);
    }
  }

  /** Nodes the kernel holds (root included). */
  get size(): number {
    return this.byId.size;
  }
}
