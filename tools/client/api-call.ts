/**
 * The CLI verbs' common ground: find the vPool of a path (locate.ts), call its management API, print the
 * answer (`--json`: the API's JSON as it came; otherwise for people). Refusals are the API's sentence.
 */
import { call, pathParam } from '../../api/client.js';
import { locate, type Located } from './locate.js';

export interface VerbOpts {
  json?: boolean;
  socket?: string;
}

let globalSocket: string | undefined;
/** The global `--socket PATH` (cli.ts): overrides the socket the mount names. */
export function setSocket(socket: string | undefined): void {
  globalSocket = socket;
}

/** The located path and a caller for its API. */
export async function onPool(file: string, opts: VerbOpts): Promise<Located & { api: <T>(method: string, url: string, body?: unknown) => Promise<T> }> {
  const loc = await locate(file, opts.socket ?? globalSocket);
  return { ...loc, api: <T>(method: string, url: string, body?: unknown) => call<T>(loc.target, method, url, body) };
}

/** `/v1/vdisks/<path>` plus `tail`. */
export function vdiskUrl(vpoolPath: string, tail = ''): string {
  return `/v1/vdisks/${pathParam(vpoolPath)}${tail}`;
}

/** Prints `body` as JSON with --json, else `text()` (nothing at all for an empty text, like `ls` of an empty directory). */
export function say(opts: VerbOpts, body: unknown, text: () => string): void {
  const out = opts.json ? JSON.stringify(body) : text();
  if (out !== '') console.log(out);
}
