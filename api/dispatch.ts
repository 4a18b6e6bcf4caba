/**
 * One API request from its method, URL and body to its answer, without the HTTP layer: the route table's match
 * (routes.ts), the route's handler, every failure turned into the error body (errors.ts) and logged. The HTTP
 * server (server.ts) answers with it; so does a router serving a vDisk delegated to it, for the requests the
 * vPool's owner forwards there (tools/daemon/delegate-calls.ts, ownership per vDisk, docs/cluster.md): a route
 * marked `forward` on a delegated vDisk is answered by that router, its status and body as it gave them.
 */
import { logger } from '../util/log.js';
import type { ApiContext, ApiReply } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { vpoolPath } from './paths.js';
import { withTreeAttrs } from './forwarded.js';
import { matchRoute } from './routes.js';

const log = logger('api');

function failed(err: unknown, method: string, url: URL): ApiReply {
  const e = toApiError(err, `${method} ${url.pathname}`, null);
  if (e.body.code === 'INTERNAL') log.error(e.message, { method, path: url.pathname, error: err instanceof Error ? err.stack : String(err) });
  else log.warn(e.message, { method, path: url.pathname, code: e.body.code, errno: e.body.errno, object: e.body.object });
  return { status: e.status, body: { error: e.body } };
}

/** The answer to `method url`; `body` is read once the route matched (a refused route reads nothing). Never throws. */
export async function dispatch(ctx: ApiContext, method: string, url: URL, body: () => Promise<unknown>, check?: () => void): Promise<ApiReply> {
  try {
    check?.();
    const { route, params } = matchRoute(method, url.pathname);
    const b = await body();
    if (route.forward !== undefined && ctx.forward !== undefined) {
      const p = vpoolPath(params.path, `${method} ${url.pathname}`);
      const there = await ctx.forward(p, method, url.pathname + url.search, b);
      if (there !== undefined) {
        if (there.status < 300) {
          if (route.forward.changed !== undefined) await ctx.changed(p, route.forward.changed);
          if (route.forward.view === true) there.body = withTreeAttrs(ctx, p, there.body);
        }
        return there;
      }
    }
    return await route.handle(ctx, { params, query: url.searchParams, body: b });
  } catch (err) {
    return failed(err, method, url);
  }
}

/**
 * A request the vPool's owner forwarded to this router about a vDisk it serves as a delegate: only routes marked
 * `forward` are taken (the others are the owner's to answer).
 */
export function dispatchForwarded(ctx: ApiContext, method: string, url: URL, body: unknown): Promise<ApiReply> {
  return dispatch(ctx, method, url, () => Promise.resolve(body), () => {
    const { route } = matchRoute(method, url.pathname);
    if (route.forward === undefined) throw new ApiError('BAD_REQUEST', `${method} ${url.pathname}: answered by the vPool's owner, not by a router a vDisk is delegated to`);
  });
}
