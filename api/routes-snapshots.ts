/**
 * Snapshot routes of a vDisk: list, create, sticky on/off, delete, rollback, clone, template — the same
 * operations as the `user.vdisk.*` xattrs (fuse/xattr-snapshot.ts), with errors that say which snapshot,
 * which path and why. A rollback or a template changes the vDisk behind the kernel's back: it is told. On a vDisk
 * delegated to another router every one of them is answered there (`forward`: api/dispatch.ts).
 */
import { withShipProgress } from '../volume/datapath/upload/ship-progress.js';
import { boolField, objectBody, stringField } from './body.js';
import type { ApiContext, Route } from './context.js';
import { ApiError } from './errors.js';
import { shown, vpoolPath } from './paths.js';
import { attempt, checkVdisk, unopened } from './routes-vdisks.js';
import { snapshotView, vdiskView } from './views.js';

function snapshotOf(ctx: ApiContext, p: string, name: string, what: string) {
  const s = ctx.vpool.snapshots.list(p).find((x) => x.name === name);
  if (s === undefined) throw new ApiError('NOT_FOUND', `${what}: ${shown(p)} has no snapshot named ${JSON.stringify(name)}`, `${shown(p)}@${name}`);
  return s;
}

export const snapshotRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/vdisks/{path}/snapshots',
    forward: {},
    summary: "a vDisk's snapshots, oldest first",
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'list snapshots');
      const what = `list the snapshots of ${shown(p)}`;
      checkVdisk(ctx, p, what);
      return { status: 200, body: (await attempt(what, shown(p), () => ctx.vpool.snapshots.list(p))).map(snapshotView) };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/vdisks/{path}/snapshots',
    forward: {},
    summary: 'take a snapshot {name, sticky?}',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'take a snapshot');
      const body = objectBody(req.body, `snapshot ${shown(p)}`);
      const name = stringField(body, 'name', `snapshot ${shown(p)}`, true);
      const sticky = boolField(body, 'sticky', `snapshot ${shown(p)}`, false) ?? false;
      const what = `snapshot ${JSON.stringify(name)} of ${shown(p)}`;
      checkVdisk(ctx, p, what);
      const s = await attempt(what, `${shown(p)}@${name}`, () => ctx.vpool.snapshots.create(p, name, { sticky }));
      return { status: 201, body: snapshotView(s) };
    },
  },
  {
    method: 'PATCH',
    pattern: '/v1/vdisks/{path}/snapshots/{name}',
    forward: {},
    summary: 'make a snapshot sticky or not {sticky}',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'change a snapshot');
      const name = req.params.name;
      const sticky = boolField(objectBody(req.body, `change snapshot ${name} of ${shown(p)}`), 'sticky', `change snapshot ${name} of ${shown(p)}`, true)!;
      const what = `${sticky ? 'make' : 'unmake'} snapshot ${JSON.stringify(name)} of ${shown(p)} sticky`;
      checkVdisk(ctx, p, what);
      snapshotOf(ctx, p, name, what);
      await attempt(what, `${shown(p)}@${name}`, () => ctx.vpool.snapshots.setSticky(p, name, sticky));
      return { status: 200, body: snapshotView(snapshotOf(ctx, p, name, what)) };
    },
  },
  {
    method: 'DELETE',
    pattern: '/v1/vdisks/{path}/snapshots/{name}',
    forward: {},
    summary: 'delete a snapshot (refused while it has clones)',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'delete a snapshot');
      const name = req.params.name;
      const what = `delete snapshot ${JSON.stringify(name)} of ${shown(p)}`;
      checkVdisk(ctx, p, what);
      snapshotOf(ctx, p, name, what);
      await attempt(what, `${shown(p)}@${name}`, () => ctx.vpool.snapshots.remove(p, name));
      return { status: 204 };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/vdisks/{path}/rollback',
    forward: { changed: 'data', view: true },
    summary: 'roll a vDisk back to a snapshot {snapshot}; later snapshots are dropped; refused while it is open',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'roll back');
      const name = stringField(objectBody(req.body, `roll back ${shown(p)}`), 'snapshot', `roll back ${shown(p)}`, true);
      const what = `roll back ${shown(p)} to ${JSON.stringify(name)}`;
      checkVdisk(ctx, p, what);
      snapshotOf(ctx, p, name, what);
      await attempt(what, shown(p), async () => {
        await unopened(ctx, p);
        // the rollback waits for the backend: a slow one is logged with progress (ship-progress.ts)
        await withShipProgress(ctx.vpool.name, [ctx.vpool.vdisk(p)], () => ctx.vpool.snapshots.rollback(p, name), what);
      });
      await ctx.changed(p, 'data');
      return { status: 200, body: vdiskView(ctx, p) };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/vdisks/{path}/clones',
    forward: {},
    summary: 'clone a vDisk {target, snapshot?}: a new vDisk at target from the snapshot (without one, from a snapshot taken now)',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'clone');
      const body = objectBody(req.body, `clone ${shown(p)}`);
      const target = vpoolPath(stringField(body, 'target', `clone ${shown(p)}`, true), `clone ${shown(p)}`);
      const name = stringField(body, 'snapshot', `clone ${shown(p)}`) ?? '';
      const what = `clone ${shown(p)}${name ? `@${name}` : ''} to ${shown(target)}`;
      checkVdisk(ctx, p, what);
      if (name) snapshotOf(ctx, p, name, what);
      let exists = true;
      try {
        ctx.vpool.stat(target);
      } catch {
        exists = false;
      }
      if (exists) throw new ApiError('EXISTS', `${what}: ${shown(target)} exists already`, shown(target));
      // the clone waits for its parent's data to be in the backend: logged with progress while it ships
      await attempt(what, shown(target), () => withShipProgress(ctx.vpool.name, [ctx.vpool.vdisk(p)], () => ctx.vpool.snapshots.clone(p, name, target), what));
      return { status: 201, body: vdiskView(ctx, target) };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/vdisks/{path}/template',
    forward: { changed: 'attrs', view: true },
    summary: 'make a vDisk a read-only template (its last snapshot kept, a source for clones)',
    async handle(ctx, req) {
      const p = vpoolPath(req.params.path, 'make a template');
      const what = `make ${shown(p)} a template`;
      checkVdisk(ctx, p, what);
      await attempt(what, shown(p), () => ctx.vpool.snapshots.makeTemplate(p));
      await ctx.changed(p, 'attrs');
      return { status: 200, body: vdiskView(ctx, p) };
    },
  },
];
