/**
 * Every route of the management API, and the matcher. docs/api.yaml documents exactly these (test/api-openapi.test.ts
 * checks both ways).
 */
import type { Method, Route } from './context.js';
import { ApiError } from './errors.js';
import { snapshotRoutes } from './routes-snapshots.js';
import { statusRoutes } from './routes-status.js';
import { vdiskRoutes } from './routes-vdisks.js';
import { rekeyRoutes } from './routes-rekey.js';
import { gcRoutes } from './routes-gc.js';
import { routerRoutes } from './routes-routers.js';

export const ROUTES: readonly Route[] = [...statusRoutes, ...vdiskRoutes, ...snapshotRoutes, ...rekeyRoutes, ...gcRoutes, ...routerRoutes];

/** The route for `method` and the raw URL path, with its parameters decoded; NO_ROUTE / METHOD_NOT_ALLOWED otherwise. */
export function matchRoute(method: string, rawPath: string): { route: Route; params: Record<string, string> } {
  const segs = rawPath.split('/').slice(1);
  let pathMatched = false;
  for (const route of ROUTES) {
    const pat = route.pattern.split('/').slice(1);
    if (pat.length !== segs.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pat.length && ok; i++) {
      const m = /^\{(\w+)\}$/.exec(pat[i]);
      if (m) {
        if (segs[i] === '') ok = false;
        else {
          try {
            params[m[1]] = decodeURIComponent(segs[i]);
          } catch {
            throw new ApiError('BAD_REQUEST', `bad percent-encoding in ${JSON.stringify(segs[i])}`);
          }
        }
      } else ok = pat[i] === segs[i];
    }
    if (!ok) continue;
    pathMatched = true;
    if (route.method === method) return { route, params };
  }
  if (pathMatched) throw new ApiError('METHOD_NOT_ALLOWED', `${method} ${rawPath}: this resource does not take ${method}`);
  throw new ApiError('NO_ROUTE', `${method} ${rawPath}: no such resource (the routes are in docs/api.yaml)`);
}

export type { Method };
