/**
 * Ownership per vDisk in a router's handler tables (docs/cluster.md, "Ownership per vDisk"): the per-file calls
 * of a delegated vDisk go to the router that serves it, every other call where it went before.
 *
 *   VDiskRoutes   one per router: path of a delegated vDisk → the handlers serving it (this router's own handlers
 *                 over its DelegatedVDisk, or the delegate's router link), and the paths whose calls are held
 *                 while their vDisk changes router (a move: new calls wait, hold() resolves once the running ones
 *                 answered; set() switches and lets the waiting ones run on the new target).
 *   RoutedTable   a handler table over a default table (the vPool's: this router's own handlers on the vPool's
 *                 owner, the follower table forwarding to the owner elsewhere) and the router's VDiskRoutes. One
 *                 per consumer of handles: the router's own mount, its router link server (the calls of other
 *                 routers), each with its own file handles.
 *
 * Routed by path: open, truncate, getattr (the tree's attributes from the default table, the size and allocated
 * bytes from the vDisk's router: both asked at once) and the `user.vdisk.*` xattrs. Routed by handle: every call
 * on a handle goes where the handle was opened. When a path's route changes, its handles here are released on
 * the old target and re-opened on the new one at their next call (lazily: a re-open through a router that holds
 * the path's calls waits like any call, and never inside the switch — two routers moving a vDisk between them
 * would otherwise wait for each other). Namespace calls (create, mkdir, rename, unlink, readdir, …) always go to
 * the default table: the tree is the vPool owner's.
 */
import { E } from '../fuse/errno.js';
import type { FdTable } from '../fuse/fds.js';
import type { Handlers } from '../fuse/handlers.js';
import { logger } from '../util/log.js';
import { fhIndex, opensForWrite, renamedPath, SIGNATURES } from './wire.js';

const log = logger('router-link');

type Cb = (code: number, ...values: unknown[]) => void;

/** Per-file calls routed by their path argument when it is a delegated vDisk's. */
const BY_PATH = new Set(['open', 'truncate', 'getattr']);
const XATTR_OPS = new Set(['getxattr', 'setxattr', 'removexattr']);

function routedByPath(op: string, args: unknown[]): boolean {
  if (BY_PATH.has(op)) return true;
  return XATTR_OPS.has(op) && typeof args[1] === 'string' && args[1].startsWith('user.vdisk.');
}

interface Held {
  why: string;
  waiting: Array<{ run: () => void; fail: () => void; timer: NodeJS.Timeout }>;
}

export class VDiskRoutes {
  private readonly routes = new Map<string, Handlers>();
  /** A follower's direct routes to other routers' delegated vDisks (tools/daemon/direct-routes.ts): below `routes`. */
  private readonly directs = new Map<string, Handlers>();
  private readonly held = new Map<string, Held>();
  private readonly running = new Map<string, number>();
  private readonly idle = new Map<string, Array<() => void>>();
  private readonly tables = new Set<RoutedTable>();
  private readonly renameListeners = new Set<(from: string, to: string) => void>();

  constructor(readonly waitMs: number) {}

  /** The handlers serving the delegated vDisk at `path`, if it is one. */
  get(path: string): Handlers | undefined {
    return this.routes.get(path);
  }

  paths(): string[] {
    return [...this.routes.keys()];
  }

  /** The router a follower reaches the delegated vDisk at `path` at directly, if it learnt one. */
  direct(path: string): Handlers | undefined {
    return this.directs.get(path);
  }

  /**
   * A follower's direct route (tools/daemon/direct-routes.ts): `path`'s per-file calls of this router's own mount
   * go to `ops` (null: to the default table again) — not those that came over a router link (those go at most one
   * hop further, to the vPool's owner: two followers with stale direct routes to each other would bounce a call).
   * Below set()'s routes: a vDisk this router serves itself is never routed away. The handles open on the old
   * target are released there and re-opened at their next call, as for set().
   */
  setDirect(path: string, ops: Handlers | null): void {
    const old = this.directs.get(path);
    if (ops === null) this.directs.delete(path);
    else this.directs.set(path, ops);
    if (this.routes.has(path)) return;
    for (const t of this.tables) if (t.direct) t.moved(path, old, ops ?? undefined);
  }

  register(t: RoutedTable): void {
    this.tables.add(t);
  }

  /**
   * A rename made through one of this router's tables (its own mount's, its router link's): the handles of every
   * table on the renamed path (or under it) follow, and the listeners are told (onRename: the router link server's
   * per-connection paths, the mount's follower table) — an open handle counts (handlesByPath, the link's
   * holdersByPath) and is re-opened after a move under its path now, wherever the rename was made.
   */
  renamed(from: string, to: string): void {
    for (const t of this.tables) t.followRename(from, to);
    for (const fn of this.renameListeners) fn(from, to);
  }

  /** `fn` is called at each rename through this router's tables (renamed()); returns what stops that. */
  onRename(fn: (from: string, to: string) => void): () => void {
    this.renameListeners.add(fn);
    return () => { this.renameListeners.delete(fn); };
  }

  /** Open handles of `path` in this router's tables but `except` (a delegate's own link: the asker counts those). */
  handlesOf(path: string, except?: RoutedTable): number {
    let n = 0;
    for (const t of this.tables) if (t !== except) n += t.handlesByPath().get(path) ?? 0;
    return n;
  }

  /** New calls on `path` wait (each at most waitMs, then EIO); resolves once the running ones answered. */
  hold(path: string, why: string): Promise<void> {
    if (!this.held.has(path)) {
      this.held.set(path, { why, waiting: [] });
      log.info(`MOVE: calls on ${path} wait from now on (at most ${this.waitMs} ms each): ${why}`, { path, running: this.running.get(path) ?? 0 });
    }
    if ((this.running.get(path) ?? 0) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.idle.get(path) ?? [];
      list.push(resolve);
      this.idle.set(path, list);
    });
  }

  /**
   * Routes `path`'s per-file calls to `ops` (null: back to the default table), releases the handles opened on the
   * old target (re-opened on the new one at their next call) and lets the held calls run.
   */
  set(path: string, ops: Handlers | null): void {
    const old = this.routes.get(path);
    if (ops === null) this.routes.delete(path);
    else this.routes.set(path, ops);
    for (const t of this.tables) t.moved(path, old ?? (t.direct ? this.directs.get(path) : undefined), ops ?? undefined);
    this.release(path);
  }

  /** Lets the held calls of `path` run where it is routed now (a move that changed nothing: abandoned). */
  release(path: string): void {
    const h = this.held.get(path);
    if (h === undefined) return;
    this.held.delete(path);
    for (const w of h.waiting) {
      clearTimeout(w.timer);
      w.run();
    }
  }

  /** Runs `run` now, or once `path` is not held. */
  gate(path: string, run: () => void, fail: () => void): void {
    const h = this.held.get(path);
    if (h === undefined) return run();
    const w = {
      run, fail,
      timer: setTimeout(() => {
        const i = h.waiting.indexOf(w);
        if (i >= 0) h.waiting.splice(i, 1);
        log.error(`EIO: calls on ${path} waited ${this.waitMs} ms for its vDisk to change router (${h.why})`, { path });
        fail();
      }, this.waitMs),
    };
    h.waiting.push(w);
  }

  begin(path: string): () => void {
    this.running.set(path, (this.running.get(path) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.running.get(path) ?? 1) - 1;
      if (n > 0) return void this.running.set(path, n);
      this.running.delete(path);
      for (const w of this.idle.get(path) ?? []) w();
      this.idle.delete(path);
    };
  }
}

interface Handle {
  path: string;
  flags: number;
  /** Where it is open now (undefined: to be re-opened at its next call) and its number there. */
  ops?: Handlers;
  fh?: number;
}

const O_RDWR = 2;

export class RoutedTable {
  readonly ops: Handlers;
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private readonly free: number[] = [];

  /**
   * `readerFds`: the default table's (the kernel engine's reader threads), used for handles open there. `merge`:
   * false for a delegate's own router link (the vPool's owner asks it only for the vDisk's part of a getattr;
   * merging there would ask the owner back, which asks the delegate again: a loop).
   */
  /** Whether a follower's direct routes (VDiskRoutes.setDirect) apply here: not on a delegate's own link. */
  readonly direct: boolean;

  constructor(private readonly routes: VDiskRoutes, private readonly base: Handlers, private readonly baseReaderFds?: FdTable, private readonly merge = true) {
    this.direct = merge;
    routes.register(this);
    const ops: Handlers = {};
    for (const op of [...Object.keys(SIGNATURES), 'fsyncdir']) ops[op] = (...args: unknown[]) => this.dispatch(op, args.slice(0, -1), args[args.length - 1] as Cb);
    this.ops = ops;
  }

  get openHandles(): number {
    return this.handles.size;
  }

  /** Handles open for writing per path (the automatic move per vDisk counts them: tools/daemon/vdisk-automove.ts). */
  handlesByPath(): Map<string, number> {
    const out = new Map<string, number>();
    for (const h of this.handles.values()) if (opensForWrite(h.flags)) out.set(h.path, (out.get(h.path) ?? 0) + 1);
    return out;
  }

  readerFds(): FdTable {
    const view = {
      get: (fh: number) => {
        const h = this.handles.get(fh);
        return h !== undefined && h.ops === this.base && h.fh !== undefined ? this.baseReaderFds?.get(h.fh) : undefined;
      },
    };
    return view as unknown as FdTable;
  }

  /** `path` changed router (VDiskRoutes.set): its handles here are released there and re-opened at their next call. */
  moved(path: string, from: Handlers | undefined, to: Handlers | undefined): void {
    void to;
    const was = from ?? this.base;
    for (const h of this.handles.values()) {
      if (h.path !== path || h.ops === undefined) continue;
      if (h.ops === was && h.fh !== undefined) {
        const fh = h.fh;
        try {
          was.release(path, fh, () => undefined);
        } catch {
          // a release on a closed target: nothing to release there any more
        }
      }
      h.ops = undefined;
      h.fh = undefined;
    }
  }

  /** Where `path`'s per-file calls go, if not to the default table. */
  private route(path: string): Handlers | undefined {
    return this.routes.get(path) ?? (this.direct ? this.routes.direct(path) : undefined);
  }

  private target(path: string): Handlers {
    return this.route(path) ?? this.base;
  }

  private dispatch(op: string, args: unknown[], cb: Cb): void {
    if (op === 'fsyncdir') return this.base.fsyncdir !== undefined ? this.base.fsyncdir(...args, cb) : cb(0);
    const fi = fhIndex(op);
    const h = fi >= 0 ? this.handles.get(args[fi] as number) : undefined;
    if (fi >= 0 && h === undefined) return cb(E.EBADF);
    const path = h !== undefined ? h.path : args[0] as string;
    // namespace calls (and calls on other files) go straight to the default table, never held here
    if (h === undefined && !(routedByPath(op, args) && typeof path === 'string')) {
      if (op === 'create') return this.call(this.base, op, args, this.opened(op, args, this.base, cb));
      if (op === 'rename') {
        return this.call(this.base, op, args, (code, ...values) => {
          if (code >= 0) this.routes.renamed(args[0] as string, args[1] as string);
          cb(code, ...values);
        });
      }
      return this.call(this.base, op, args, cb);
    }
    this.routes.gate(path, () => this.run(op, args, cb, fi, h, path), () => cb(E.EIO));
  }

  private run(op: string, args: unknown[], cb: Cb, fi: number, h: Handle | undefined, path: string): void {
    const end = this.routes.begin(path);
    const done: Cb = (code, ...values) => {
      end();
      cb(code, ...values);
    };
    try {
      if (h !== undefined) return this.onHandle(op, args, done, fi, h);
      const route = this.route(path);
      if (route === undefined || !routedByPath(op, args)) return this.call(this.base, op, args, this.opened(op, args, this.base, done));
      if (op === 'getattr' && this.merge) return this.mergedStat(route, path, [path], done);
      this.call(route, op, args, this.opened(op, args, route, done));
    } catch (err) {
      log.error(`${op} failed unexpectedly: EIO`, { path, error: err instanceof Error ? err.stack : String(err) });
      done(E.EIO);
    }
  }

  /** The tree's attributes from the default table, the vDisk's size and allocated bytes from its router. */
  private mergedStat(route: Handlers, path: string, routeArgs: unknown[], cb: Cb, op = 'getattr'): void {
    let tree: { code: number; st?: Record<string, unknown> } | null = null;
    let disk: { code: number; st?: Record<string, unknown> } | null = null;
    const both = () => {
      if (tree === null || disk === null) return;
      if (tree.code < 0) return cb(tree.code);
      if (disk.code < 0) return cb(disk.code);
      cb(0, { ...tree.st, size: disk.st!.size, allocatedBytes: disk.st!.allocatedBytes });
    };
    this.call(this.base, 'getattr', [path], (code, st) => { tree = { code, st: st as Record<string, unknown> }; both(); });
    this.call(route, op, routeArgs, (code, st) => { disk = { code, st: st as Record<string, unknown> }; both(); });
  }

  private onHandle(op: string, args: unknown[], cb: Cb, fi: number, h: Handle): void {
    const fh = args[fi] as number;
    if (op === 'release') {
      this.remove(fh);
      if (h.ops === undefined || h.fh === undefined) return cb(0);
      const a = [...args];
      a[fi] = h.fh;
      return this.call(h.ops, op, a, cb);
    }
    if (typeof args[0] === 'string' && args[0].startsWith('/')) h.path = args[0];
    const go = () => {
      const a = [...args];
      a[fi] = h.fh;
      const route = this.route(h.path);
      if (op === 'fgetattr' && this.merge && route !== undefined && h.ops === route) return this.mergedStat(route, h.path, a, cb, 'fgetattr');
      this.call(h.ops!, op, a, cb);
    };
    if (h.ops !== undefined && h.fh !== undefined) return go();
    // the path changed router since this handle was opened: open it where it is served now
    const t = this.target(h.path);
    this.call(t, 'open', [h.path, h.flags], (code, nfh) => {
      if (code < 0 || typeof nfh !== 'number') {
        log.error('an open file could not be re-opened on the router that serves its vDisk now', { path: h.path, errno: -code });
        return cb(code < 0 ? code : E.EIO);
      }
      if (this.target(h.path) !== t) {
        // the path changed router again while this re-open was on its way (moved() saw no target on the handle):
        // released there and re-opened where it is served now — else every call on it would take the old way
        // for as long as it is open (seen: a follower's writes through the owner after its direct route came)
        try {
          t.release(h.path, nfh, () => undefined);
        } catch {
          // a release on a closed target: nothing to release there any more
        }
        return this.onHandle(op, args, cb, fi, h);
      }
      h.ops = t;
      h.fh = nfh;
      go();
    });
  }

  /** For open and create: the target's handle wrapped in one of this table's. */
  private opened(op: string, args: unknown[], t: Handlers, cb: Cb): Cb {
    if (op !== 'open' && op !== 'create') return cb;
    return (code, ...values) => {
      if (code >= 0 && typeof values[0] === 'number') {
        const fh = this.free.pop() ?? this.nextFh++;
        const h: Handle = { path: args[0] as string, flags: op === 'open' ? (args[1] as number) : O_RDWR, ops: t, fh: values[0] };
        if (this.target(h.path) !== t) {
          // the path changed router while this open was on its way (moved() did not see it): released there,
          // re-opened where it is served now at its next call — else every call on it would take the old way
          // for as long as it is open (a follower's writes would go delegate → owner → delegate)
          try {
            t.release(h.path, values[0], () => undefined);
          } catch {
            // a release on a closed target: nothing to release there any more
          }
          h.ops = undefined;
          h.fh = undefined;
        }
        this.handles.set(fh, h);
        return cb(code, fh);
      }
      cb(code, ...values);
    };
  }

  private call(t: Handlers, op: string, args: unknown[], cb: Cb): void {
    t[op](...args, cb);
  }

  /** A rename through any table of this router (VDiskRoutes.renamed): the handles on the path, or under it, follow. */
  followRename(from: string, to: string): void {
    for (const h of this.handles.values()) h.path = renamedPath(h.path, from, to);
  }

  private remove(fh: number): void {
    if (this.handles.delete(fh)) this.free.push(fh);
  }
}
