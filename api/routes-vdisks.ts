/**
 * vDisk routes: list (a directory, recursively or not), directory entries (for `ls`), one vDisk, create,
 * resize / DTL mode, delete. A change made here goes round the mount, so the kernel is told (ctx.changed).
 */
import path from 'node:path';
import { waitUnopened } from '../fuse/xattr-snapshot.js';
import { VolumeError, VpoolError } from '../util/errors.js';
import { holdersOf, holdersText } from './holders.js';
import { walkTree } from '../fuse/pool-usage.js';
import type { DtlMode } from '../volume/types.js';
import { objectBody, sizeField, stringField } from './body.js';
import type { ApiContext, Route } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { shown, vpoolPath } from './paths.js';
import { entryView, vdiskView } from './views.js';
import { delegatedView } from './forwarded.js';

/** The vDisk at `p`, or NOT_FOUND / IS_DIR naming it. */
export function checkVdisk(ctx: ApiContext, p: string, what: string): void {
  let kind;
  try {
    kind = ctx.vpool.stat(p).kind;
  } catch (err) {
    throw toApiError(err, what, shown(p));
  }
  if (kind !== 'file') throw new ApiError('IS_DIR', `${what}: ${shown(p) || '/'} is a directory, not a vDisk`, shown(p));
}

function checkDir(ctx: ApiContext, p: string, what: string): void {
  let kind;
  try {
    kind = ctx.vpool.stat(p).kind;
  } catch (err) {
    throw toApiError(err, what, shown(p));
  }
  if (kind !== 'dir') throw new ApiError('NOT_DIR', `${what}: ${shown(p)} is a vDisk, not a directory`, shown(p));
}

/** BUSY while a process has the vDisk open (after the release grace), naming the processes that hold it. */
export async function unopened(ctx: ApiContext, p: string): Promise<void> {
  try {
    await waitUnopened(ctx.vpool, p);
  } catch (err) {
    if (!(err instanceof VpoolError) || err.code !== 'BUSY') throw err;
    const holders = await holdersOf(path.join(ctx.mountpoint, p));
    if (holders.length === 0) throw err; // a handle whose process is gone meanwhile, or not ours to see
    throw new VolumeError('BUSY', `${shown(p)} is open by ${holdersText(holders)}`, { ...err.context, holders });
  }
}

/** Runs `fn`, turning its failure into an ApiError that starts with `what`. */
export async function attempt<T>(what: string, object: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toApiError(err, what, object);
  }
}

const DTL_MODES: readonly string[] = ['none', 'async', 'sync'];

export const vdiskRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/vdisks',
    summary: 'the vDisks under a directory (?dir=, default the root; ?recursive=false for that directory only)',
    async handle(ctx, req) {
      const dir = vpoolPath(req.query.get('dir') ?? '/', 'list vDisks');
      const recursive = req.query.get('recursive') !== 'false';
      const what = `list vDisks under ${shown(dir) || '/'}`;
      checkDir(ctx, dir, what);
      const vdisks = [];
      for (const { path, stat } of walkTree(ctx.vpool, dir)) {
        if (stat.kind !== 'file') continue;
        if (!recursive && path.slice(0, path.lastIndexOf('/') || 1) !== dir) continue;
        vdisks.push(await attempt(what, shown(path), async () => (await delegatedView(ctx, path)) ?? vdiskView(ctx, path)));
      }
      return { status: 200, body: { dir: shown(dir), vdisks } };
    },
  },
  {
    method: 'GET',
    pattern: '/v1/entries',
    summary: 'the entries of a directory (?dir=), vDisks with their view: what `vpoolfs ls` shows',
    async handle(ctx, req) {
      const dir = vpoolPath(req.query.get('dir') ?? '/', 'list a directory');
      const what = `list ${shown(dir) || '/'}`;
      checkDir(ctx, dir, what);
      const entries = [];
      for (const name of ctx.vpool.readdir(dir)) {
        const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
        let st;
        try {
          st = ctx.vpool.stat(p);
        } catch {
          continue; // gone meanwhile
        }
        entries.push(await attempt(what, shown(p), async () => entryView(ctx, p, st, st.kind === 'file' ? await delegatedView(ctx, p) : undefined)));
      }
      return { status: 200, body: { dir: shown(dir), entries } };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/vdisks',
    summary: 'create a thin vDisk {path, size}; nothing is left behind when it fails',
    async handle(ctx, req) {
      const body = objectBody(req.body, 'create a vDisk');
      const p = vpoolPath(stringField(body, 'path', 'create a vDisk', true), 'create a vDisk');
      const size = sizeField(body, 'size', `create ${shown(p)}`, true)!;
      const what = `create ${shown(p)} (${size} bytes)`;
      // one step in the volume layer: the size is checked before anything is created (no empty file left by EFBIG)
      await attempt(what, shown(p), () => ctx.vpool.createFile(p, 0o644, process.getuid?.() ?? 0, process.getgid?.() ?? 0, size));
      return { status: 201, body: vdiskView(ctx, p) };
    },
  },
  {
    method: 'GET',
    pattern: '/v1/vdisks/{path}',
    forward: { view: true },
    summary: 'one vDisk: size, allocated, own and inherited bytes, backend bytes, parent, snapshots, DTL, open handles',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'show a vDisk');
      const what = `show ${shown(p)}`;
      checkVdisk(ctx, p, what);
      return { status: 200, body: await attempt(what, shown(p), () => vdiskView(ctx, p)) };
    },
  },
  {
    method: 'PATCH',
    pattern: '/v1/vdisks/{path}',
    forward: { changed: 'data', view: true },
    summary: 'resize a vDisk {size} (a shrink discards the data past it) and/or change its DTL mode {dtl}',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'change a vDisk');
      const body = objectBody(req.body, `change ${shown(p)}`);
      const size = sizeField(body, 'size', `resize ${shown(p)}`, false);
      const dtl = stringField(body, 'dtl', `set the DTL mode of ${shown(p)}`);
      if (size === undefined && dtl === undefined) throw new ApiError('BAD_REQUEST', `change ${shown(p)}: give "size" and/or "dtl"`, shown(p));
      if (dtl !== undefined && !DTL_MODES.includes(dtl)) throw new ApiError('INVALID', `set the DTL mode of ${shown(p)}: "dtl" is none, async or sync, got ${JSON.stringify(dtl)}`, shown(p));
      checkVdisk(ctx, p, `change ${shown(p)}`);
      if (size !== undefined) {
        await attempt(`resize ${shown(p)} to ${size} bytes`, shown(p), () => ctx.vpool.vdisk(p).resize(size));
        await ctx.changed(p, 'data');
      }
      if (dtl !== undefined) await attempt(`set the DTL mode of ${shown(p)} to ${dtl}`, shown(p), () => ctx.vpool.setDtlMode(p, dtl as DtlMode));
      return { status: 200, body: vdiskView(ctx, p) };
    },
  },
  {
    method: 'DELETE',
    pattern: '/v1/vdisks/{path}',
    summary: 'delete a vDisk (refused while it has clones or is open); its backend objects go in the background',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'delete a vDisk');
      const what = `delete ${shown(p)}`;
      checkVdisk(ctx, p, what);
      await attempt(what, shown(p), async () => {
        await unopened(ctx, p);
        await ctx.vpool.unlink(p);
      });
      await ctx.changed(p, 'gone');
      return { status: 204 };
    },
  },
];
