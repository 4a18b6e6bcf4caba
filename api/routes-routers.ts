/**
 * `GET /v1/routers`: what `vpoolfs router list` shows, answered by this router from its own registry session
 * (registry/router-list.ts): so an operator on a router host asks the mount, with no etcd address or etcd
 * credentials of their own (docs/cluster.md, "router list through a mount"). `{registry, routers}`; a mount
 * without a registry answers `{registry: null, routers: []}`; etcd not answering is BACKEND (502) saying why.
 */
import type { Route } from './context.js';
import { toApiError } from './errors.js';

export const routerRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/routers',
    summary: 'the routers of the registry this mount is registered in (vpoolfs router list), from its registry session',
    async handle(ctx) {
      const reg = ctx.registry;
      if (reg === undefined) return { status: 200, body: { registry: null, routers: [] } };
      const routers = await reg.routers().catch((err: unknown) => {
        throw toApiError(err, 'router list', null);
      });
      return { status: 200, body: { registry: reg.url, routers } };
    },
  },
];
