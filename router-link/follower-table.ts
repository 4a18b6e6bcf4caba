/**
 * A follower's handler table (docs/cluster.md, "Followers"): the same handlers as fuse/handlers.ts builds —
 * the FUSE engines cannot tell the difference —, each of which runs on the current target:
 *
 *   remote   the owner's handlers, over the router link (./client.ts): name and arguments sent, the owner's
 *            result answered (read's data copied into the engine's buffer);
 *   local    this router's own handlers, once it has taken the vPool over (switched in place: the mount stays);
 *   down     no target: the owner is gone or unreachable. Calls wait, each at most `waitMs`, then answer EIO
 *            with a log saying why; when a target is set they run on it, in the order they came.
 *
 * File handles: the engine sees this table's own numbers; each maps to the target's handle, and remembers the
 * path and flags it was opened with (kept up to date from the path every call carries, and by renames) so
 * that a new target re-opens it by path before any call runs there. A handle that cannot be re-opened answers
 * EIO from then on. A call in flight when the link went down runs again on the next target: writes, reads and
 * attribute changes are idempotent; a create or mkdir the old owner did apply answers EEXIST on the retry.
 */
import { E } from '../fuse/errno.js';
import type { FdTable } from '../fuse/fds.js';
import type { Handlers } from '../fuse/handlers.js';
import { logger } from '../util/log.js';
import { LinkDown, type LinkClient } from './client.js';
import { fhIndex, renamedPath, SIGNATURES } from './wire.js';

const log = logger('router-link');

const O_RDWR = 2;

type Cb = (code: number, ...values: unknown[]) => void;

export type Target = { kind: 'remote'; client: LinkClient } | { kind: 'local'; ops: Handlers; fds?: FdTable } | { kind: 'down'; why: string } | { kind: 'closed' };

interface Handle {
  path: string;
  flags: number;
  remote?: number;
  local?: number;
  /** Why it could not be re-opened on the current target (then its calls answer EIO). */
  broken?: string;
}

interface Waiting {
  op: string;
  args: unknown[];
  cb: Cb;
  timer: NodeJS.Timeout;
}

export class FollowerTable {
  readonly ops: Handlers;
  private target: Target = { kind: 'down', why: 'not connected to the owner yet' };
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private readonly free: number[] = [];
  private readonly queue: Waiting[] = [];
  private switching: Promise<void> = Promise.resolve();
  private timeouts = 0;
  /** Calls running on the local target now, and who waits for them to end (hold()). */
  private runningLocal = 0;
  private idleWaiters: Array<() => void> = [];
  /** Calls sent over the router link since start (metrics). */
  forwarded = 0;

  /**
   * `waitMs`: how long a call waits while there is no target; `onLinkDown`: a call found the link down (the
   * daemon looks for the next owner).
   */
  constructor(private readonly waitMs: number, private readonly onLinkDown: (why: string) => void) {
    const ops: Handlers = {};
    for (const op of [...Object.keys(SIGNATURES), 'fsyncdir']) ops[op] = (...args: unknown[]) => this.dispatch(op, args.slice(0, -1), args[args.length - 1] as Cb);
    this.ops = ops;
  }

  get kind(): Target['kind'] {
    return this.target.kind;
  }

  /** Open handles. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** Calls waiting for a target. */
  get waiting(): number {
    return this.queue.length;
  }

  /** The follower stops: the waiting calls and every new one answer EIO at once (the unmount must not wait). */
  close(): void {
    this.target = { kind: 'closed' };
    for (const w of this.queue.splice(0)) {
      clearTimeout(w.timer);
      w.cb(E.EIO);
    }
  }

  /** No target (the owner is gone or unreachable): calls wait. */
  down(why: string): void {
    if (this.target.kind === 'down' || this.target.kind === 'closed') return;
    log.warn(`the vPool's owner is unreachable: calls wait (at most ${this.waitMs} ms each) for it or for the next owner`, { why });
    this.target = { kind: 'down', why };
  }

  /**
   * A planned handover of the vPool (tools/daemon/handover.ts): new calls wait (as while the owner is down)
   * and this resolves once the calls already running on this router's own handlers have answered.
   */
  hold(why: string): Promise<void> {
    if (this.target.kind !== 'closed') {
      log.info(`MOVE: calls wait from now on (at most ${this.waitMs} ms each): ${why}`, { running: this.runningLocal, waiting: this.queue.length });
      this.target = { kind: 'down', why };
    }
    if (this.runningLocal === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * What the kernel engine's reader threads see of the open files (fuse/kernel/session.ts: a READ answered from
   * a vDisk's reader view without the main thread): the local vDisk behind a handle while the target is this
   * router's own handlers, nothing otherwise (the READ then goes through the table).
   */
  readerFds(): FdTable {
    const view = {
      get: (fh: number) => {
        const t = this.target;
        const id = this.handles.get(fh)?.local;
        return t.kind === 'local' && id !== undefined ? t.fds?.get(id) : undefined;
      },
    };
    return view as unknown as FdTable;
  }

  /** The link to `client` is gone: if it is the current target, calls wait from now on. */
  lost(client: LinkClient, why: string): void {
    if (this.target.kind !== 'remote' || this.target.client !== client) return;
    this.down(why);
    this.onLinkDown(why);
  }

  /**
   * Switches to `next` (another owner's link, or this router's own handlers after a takeover): every open handle
   * is re-opened there by path, then the waiting calls run there. Resolves once switched.
   */
  switchTo(next: Exclude<Target, { kind: 'down' | 'closed' }>): Promise<void> {
    this.switching = this.switching.then(() => this.doSwitch(next));
    return this.switching;
  }

  private async doSwitch(next: Exclude<Target, { kind: 'down' | 'closed' }>): Promise<void> {
    if (this.target.kind === 'closed') return;
    this.target = { kind: 'down', why: 'switching to the next owner' };
    let reopened = 0;
    let broken = 0;
    for (const [fh, h] of this.handles) {
      h.remote = undefined;
      h.local = undefined;
      h.broken = undefined;
      const r = await this.openOn(next, h.path, h.flags);
      if (r.code >= 0 && r.fh !== undefined) {
        if (next.kind === 'remote') h.remote = r.fh;
        else h.local = r.fh;
        reopened++;
      } else {
        h.broken = `re-opening ${h.path} on the new owner failed (errno ${-r.code})`;
        broken++;
        log.error(`an open file could not be re-opened by path on the vPool's new owner: its calls answer EIO until it is closed`, { fh, path: h.path, errno: -r.code });
      }
    }
    if ((this.target as Target).kind === 'closed') return;
    this.target = next;
    log.info(next.kind === 'local' ? 'serving the vPool with this router\'s own handlers now (took it over): the mount stayed' : `forwarding to router '${next.client.router}' at ${next.client.address}`,
      { reopened, broken, waiting: this.queue.length });
    for (const w of this.queue.splice(0)) {
      clearTimeout(w.timer);
      this.dispatch(w.op, w.args, w.cb);
    }
  }

  private openOn(t: Exclude<Target, { kind: 'down' | 'closed' }>, path: string, flags: number): Promise<{ code: number; fh?: number }> {
    if (t.kind === 'local') {
      return new Promise((resolve) => t.ops.open(path, flags, (code: number, fh?: number) => resolve({ code, fh })));
    }
    return t.client.call('open', [path, flags]).then(
      (r) => ({ code: r.code, fh: typeof r.values[0] === 'number' ? r.values[0] : undefined }),
      () => ({ code: E.EIO }),
    );
  }

  private wait(op: string, args: unknown[], cb: Cb): void {
    const w: Waiting = {
      op, args, cb,
      timer: setTimeout(() => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        if (this.timeouts++ % 1000 === 0) {
          log.error(`EIO: the vPool's owner has been unreachable for ${this.waitMs} ms and no router has taken it over (yet)`, {
            op, path: args[0], why: this.target.kind === 'down' ? this.target.why : undefined, failedSoFar: this.timeouts,
          });
        }
        cb(E.EIO);
      }, this.waitMs),
    };
    this.queue.push(w);
  }

  private add(h: Handle): number {
    const fh = this.free.pop() ?? this.nextFh++;
    this.handles.set(fh, h);
    return fh;
  }

  private remove(fh: number): void {
    if (this.handles.delete(fh)) this.free.push(fh);
  }

  /**
   * A rename through this table, or made elsewhere on this router (its router link, when it owns the vPool:
   * VDiskRoutes.onRename, tools/daemon/follower.ts): the handles on the path, or under it, follow.
   */
  followRename(from: string, to: string): void {
    for (const h of this.handles.values()) h.path = renamedPath(h.path, from, to);
  }

  private dispatch(op: string, args: unknown[], cb: Cb): void {
    if (op === 'fsyncdir') return cb(0);
    const t = this.target;
    if (t.kind === 'closed') return cb(E.EIO);
    if (t.kind === 'down') return this.wait(op, args, cb);
    const targs = [...args];
    const fi = fhIndex(op);
    let fh = 0;
    if (fi >= 0) {
      fh = args[fi] as number;
      const h = this.handles.get(fh);
      if (h === undefined) return cb(E.EBADF);
      if (op === 'release' && h.broken !== undefined) {
        this.remove(fh);
        return cb(0);
      }
      if (h.broken !== undefined) return cb(E.EIO);
      const id = t.kind === 'remote' ? h.remote : h.local;
      if (id === undefined) return cb(E.EIO);
      targs[fi] = id;
      if (typeof args[0] === 'string' && args[0].startsWith('/')) h.path = args[0];
    }
    const done: Cb = (code, ...values) => {
      if (code >= 0 && (op === 'open' || op === 'create') && typeof values[0] === 'number') {
        const h: Handle = { path: args[0] as string, flags: op === 'open' ? (args[1] as number) : O_RDWR };
        if (t.kind === 'remote') h.remote = values[0];
        else h.local = values[0];
        return cb(code, this.add(h));
      }
      if (op === 'release') this.remove(fh);
      if (op === 'rename' && code >= 0) this.followRename(args[0] as string, args[1] as string);
      cb(code, ...values);
    };
    if (t.kind === 'local') {
      this.runningLocal++;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        if (--this.runningLocal === 0) for (const w of this.idleWaiters.splice(0)) w();
      };
      try {
        t.ops[op](...targs, (code: number, ...values: unknown[]) => {
          end();
          done(code, ...values);
        });
      } catch (err) {
        end();
        log.error(`${op} failed unexpectedly: EIO`, { error: err instanceof Error ? err.stack : String(err) });
        cb(E.EIO);
      }
      return;
    }
    this.forwarded++;
    // remote: read's buffer stays here (the data comes back in the reply), write's data goes exactly `len` long
    const buf = op === 'read' ? (args[2] as Buffer | undefined) : undefined;
    if (op === 'read') targs[2] = null;
    if (op === 'write') targs[2] = (args[2] as Buffer).length === args[3] ? args[2] : (args[2] as Buffer).subarray(0, args[3] as number);
    t.client.call(op, targs).then(
      ({ code, values }) => {
        if (op === 'read' && code > 0) {
          const data = values[0] as Buffer;
          if (buf === undefined) return done(code, data);
          data.copy(buf, 0, 0, code);
          return done(code);
        }
        if (op === 'readdir' && code >= 0) return done(code, values[0], (values[1] as unknown[]).map((s) => s ?? undefined));
        done(code, ...values.map((v) => v ?? undefined));
      },
      (err: unknown) => {
        if (!(err instanceof LinkDown)) {
          log.error(`forwarding ${op} failed unexpectedly: EIO`, { error: String(err) });
          return cb(E.EIO);
        }
        // the owner went away with this call in flight: it runs again on the next target
        this.lost(t.client, err.message);
        this.dispatch(op, args, cb);
      },
    );
  }
}
