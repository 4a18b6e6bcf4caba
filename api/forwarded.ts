/**
 * What the owner's API adds to an answer of the router a vDisk is delegated to (ownership per vDisk,
 * docs/cluster.md; ApiContext.forward): the tree's attributes, which are the owner's (the delegate has only the
 * vDisk's data), and the view of a delegated vDisk inside a listing (GET /v1/vdisks, /v1/entries).
 */
import { pathParam } from './client.js';
import type { ApiContext } from './context.js';
import type { VDiskView } from './views.js';

/** A delegate's vDisk view with this router's tree attributes (mode, owner, mtime). */
export function withTreeAttrs(ctx: ApiContext, p: string, body: unknown): unknown {
  if (body === null || typeof body !== 'object') return body;
  try {
    const st = ctx.vpool.stat(p);
    return { ...body, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs) };
  } catch {
    return body; // gone from the tree meanwhile: the delegate's answer as it is
  }
}

/** The view of the vDisk at `p` from the router it is delegated to; undefined when it is served here. Throws its refusal. */
export async function delegatedView(ctx: ApiContext, p: string): Promise<VDiskView | undefined> {
  const r = await ctx.forward?.(p, 'GET', `/v1/vdisks/${pathParam(p)}`, undefined);
  if (r === undefined) return undefined;
  if (r.status !== 200) throw new Error(`the router serving it answered ${r.status}: ${(r.body as { error?: { message?: string } } | undefined)?.error?.message ?? ''}`);
  return withTreeAttrs(ctx, p, r.body) as VDiskView;
}
