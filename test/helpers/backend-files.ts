/**
 * Looking into a file:// backend's directory from outside the router that writes it (tests and benches of map
 * checkpoints across routers: test/cluster-checkpoint-takeover.test.ts, bench/cluster/cluster-history.ts). Keys are
 * paths (`vdisks/<id>/tlog/<hex>`, `vdisks/<id>/checkpoint/<hex>`); temp files of puts in flight (`.tmp~…`)
 * are not keys and are skipped.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';

/** The numbers of the keys (hex names) in a directory of a file:// backend, ascending; none when it is missing. */
export function keyNumbers(dir: string): number[] {
  try {
    return readdirSync(dir).filter((n) => /^[0-9a-f]+$/.test(n)).map((n) => parseInt(n, 16)).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

/** `vdisks/<id>/<what>` of the backend's only vDisk (`backendDir`: the file:// backend's directory). */
export function onlyVDiskDir(backendDir: string, what: string): string {
  const vdisks = path.join(backendDir, 'vdisks');
  const ids = readdirSync(vdisks);
  if (ids.length !== 1) throw new Error(`expected one vDisk in ${vdisks}, found ${ids.length}`);
  return path.join(vdisks, ids[0]!, what);
}
