/**
 * Fencing at the DTL server (docs/durability.md, "Fencing"): which incarnation of a vDisk's owner may still
 * ship to a server's copy of it. An owner that lost a vDisk without knowing it (paused, cut off from etcd but
 * not from its clients and this server) must not get its writes acknowledged through this server once the new
 * owner has registered or recovered the vDisk here.
 *
 * An incarnation is named by an Owner:
 *   router  the router's name
 *   tag     the registry's owner tag it serves the vDisk under (the vPool's tag, a delegation's or a takeback's:
 *           registry/ownership.ts, one cluster-wide counter); 0 without a registry
 *   claim   the backend claim epoch of the vPool it holds (volume/claim/claim.ts: every take, restarts included,
 *           takes the next epoch); 0 for a delegate, which holds no claim
 * (The registration's `epoch` is a timestamp per attachment, not an incarnation: a zombie re-registering
 * would carry a newer one. It still orders copies for recovery, as before.)
 *
 * The server keeps per vDisk the fence: the highest tag and claim any accepted owner carried, and the router of
 * the last one, persisted in `<dir>/fence/<id>` (atomic replace) before the request that raised it is answered,
 * so a server restart keeps it. Unregister and Clear leave it: a zombie must not get back in through a mode
 * change or a retire. A request of an owner below the fence is refused with FENCED (refusedBy, below).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../util/fsync-dir.js';
import { DtlError } from './errors.js';
import type { Reader, Writer } from './messages.js';

export interface Owner {
  router: string;
  tag: number;
  claim: number;
}

/** No owner: a registration of a client from before fencing (or a test's): it fences nothing. */
export const NO_OWNER: Owner = Object.freeze({ router: '', tag: 0, claim: 0 });

export const isNoOwner = (o: Owner): boolean => o.tag === 0 && o.claim === 0;

export function describeOwner(o: Owner): string {
  if (isNoOwner(o)) return `router '${o.router}' (no owner tag: a client without fencing)`;
  return `router '${o.router}' (${[o.tag > 0 ? `owner tag ${o.tag}` : '', o.claim > 0 ? `claim epoch ${o.claim}` : ''].filter(Boolean).join(', ')})`;
}

/** The owner fields as they follow the router's name on the wire (Register, Fence): f64 tag, f64 claim. */
export function writeOwner(w: Writer, o: Owner): Writer {
  return w.f64(o.tag).f64(o.claim);
}

/** Reads the tag and claim written by writeOwner; INVALID unless both are safe integers >= 0. */
export function readOwner(r: Reader, router: string): Owner {
  const tag = r.f64();
  const claim = r.f64();
  if (!Number.isSafeInteger(tag) || tag < 0 || !Number.isSafeInteger(claim) || claim < 0) {
    throw new DtlError('INVALID', `bad owner tag ${String(tag)} / claim epoch ${String(claim)}: each must be an integer >= 0`);
  }
  return { router, tag, claim };
}

/**
 * Why the vDisk's fence `f` refuses owner `o`, or null. No owner is refused once there is a fence. Another
 * router is refused if its tag is below the fence's, or its claim epoch (each compared only when `o` has one:
 * a delegate has no claim epoch, a router without a registry no tag). The fence's own router is compared by
 * claim epoch only: its restart takes a higher epoch but serves under the vPool's tag, which may be below the
 * takeback tag it served one vDisk under before (a same-named zombie without a claim epoch is not caught: a
 * limit, docs/durability.md).
 */
export function refusedBy(f: Owner | undefined, o: Owner): string | null {
  if (f === undefined || isNoOwner(f)) return null;
  const fenced = `fenced by ${describeOwner(f)}, which registered or recovered the vDisk here`;
  if (isNoOwner(o)) return `a request without an owner tag; the vDisk is ${fenced}`;
  if (o.claim > 0 && o.claim < f.claim) return `${describeOwner(o)} is older than the claim epoch ${f.claim}: ${fenced}`;
  if (o.router !== f.router && o.tag > 0 && o.tag < f.tag) return `${describeOwner(o)} is older than the owner tag ${f.tag}: ${fenced}`;
  return null;
}

/** The fence after owner `o` (not refused) registered or recovered: the highest of each, and its router. */
export function raised(f: Owner | undefined, o: Owner): Owner {
  if (f === undefined) return { ...o };
  return { router: o.router, tag: Math.max(f.tag, o.tag), claim: Math.max(f.claim, o.claim) };
}

/** The fences of one DTL server, in `<dir>/fence/<vdisk id>` (JSON Owner). */
export class FenceBook {
  private readonly fences = new Map<string, Owner>();
  private readonly dir: string;

  constructor(root: string, log: { warn(msg: string, f?: Record<string, unknown>): void }) {
    this.dir = path.join(root, 'fence');
    fs.mkdirSync(this.dir, { recursive: true });
    for (const id of fs.readdirSync(this.dir)) {
      if (id.endsWith('.tmp')) continue;
      try {
        const o = JSON.parse(fs.readFileSync(path.join(this.dir, id), 'utf8')) as Owner;
        if (typeof o.router !== 'string' || !Number.isSafeInteger(o.tag) || !Number.isSafeInteger(o.claim)) throw new Error('not an owner record');
        this.fences.set(id, { router: o.router, tag: o.tag, claim: o.claim });
      } catch (err) {
        // an unreadable fence fences with the highest values: nobody but a newer owner's Fence gets past it
        log.warn('an unreadable DTL fence: the vDisk refuses every owner until a new owner fences it again', { vdisk: id, error: (err as Error).message });
        this.fences.set(id, { router: '?', tag: Number.MAX_SAFE_INTEGER, claim: Number.MAX_SAFE_INTEGER });
      }
    }
  }

  get(id: string): Owner | undefined {
    return this.fences.get(id);
  }

  get size(): number {
    return this.fences.size;
  }

  /**
   * Admits owner `o` for vDisk `id`: FENCED if the fence refuses it; else raises the fence to it (on the disk
   * before this returns, when it changed). No owner changes nothing.
   */
  admit(id: string, o: Owner): { changed: boolean; before: Owner | undefined } {
    const before = this.fences.get(id);
    const why = refusedBy(before, o);
    if (why !== null) throw new DtlError('FENCED', why, { vdisk: id, fence: before });
    if (isNoOwner(o)) return { changed: false, before };
    const next = raised(before, o);
    if (before !== undefined && before.router === next.router && before.tag === next.tag && before.claim === next.claim) return { changed: false, before };
    const tmp = path.join(this.dir, `${id}.tmp`);
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, JSON.stringify(next));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path.join(this.dir, id));
    fsyncDir(this.dir);
    this.fences.set(id, next);
    return { changed: true, before };
  }

  /** FENCED if vDisk `id`'s fence refuses owner `o` (a connection's registration) now. */
  check(id: string, o: Owner, what: string): void {
    const why = refusedBy(this.fences.get(id), o);
    if (why !== null) throw new DtlError('FENCED', `${what} refused: ${why}`, { vdisk: id, fence: this.fences.get(id) });
  }
}
