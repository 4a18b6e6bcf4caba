/**
 * `POST /v1/gc/orphans` `{dryRun}`: the orphan gc of the vPool (volume/scrub/orphans.ts, docs/scrubbing.md):
 * the whole vDisk namespaces in the backend that nothing references, listed with the reason (dryRun) or
 * deleted. Through the owner, because only it knows the vDisks it has created and not yet shipped in its tree.
 * `vpoolfs gc --dry-run` on the vPool's root calls it after the per-vDisk sweeps.
 */
import { boolField, objectBody } from './body.js';
import type { Route } from './context.js';
import { attempt } from './routes-vdisks.js';

export const gcRoutes: Route[] = [
  {
    method: 'POST',
    pattern: '/v1/gc/orphans',
    summary: 'find (dryRun) or delete the vDisk namespaces in the backend that nothing references',
    async handle(ctx, req) {
      const dryRun = boolField(objectBody(req.body, 'gc orphans'), 'dryRun', 'gc orphans', false) ?? false;
      const items = await attempt('gc orphans', '/', () => ctx.vpool.scrub.orphans(dryRun));
      return { status: 200, body: { dryRun, items } };
    },
  },
];
