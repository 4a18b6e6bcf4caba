/**
 * Steps of the per-vDisk move tests through real daemons (test/vdisk-move-kill.test.ts, test/vdisk-takeback.test.ts):
 * `vpoolfs move FILE --to ROUTER`, every acknowledged block of a writer through some mounts, and the routers'
 * warnings and errors logged when a test failed.
 */
import type { ExecutionContext } from 'ava';
import { badBlocks, type Writer } from './dtl-mount.js';
import { CLI, q, sh, type MountHandle } from './mount.js';
import type { Cluster } from './registry.js';

/** `vpoolfs move FILE --to ROUTER`, which must succeed; its last line logged. */
export async function moveTo(t: ExecutionContext, c: Cluster, file: string, to: string): Promise<void> {
  const r = await sh(`node ${q(CLI)} move ${q(file)} --to ${to} --registry ${q(c.etcd.url)}`);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.log(r.stdout.trim().split('\n').pop());
}

/** Every acknowledged block of `w` through each of `mounts`. */
export async function allThere(t: ExecutionContext, w: Writer, mounts: MountHandle[]): Promise<void> {
  for (const m of mounts) {
    const bad = await badBlocks(t, m.p('disk'), w.acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${w.acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
}

/** The logs' warnings and errors, on failure. */
export function explain(t: ExecutionContext, mounts: Record<string, MountHandle>): void {
  if ((t as unknown as { passed: boolean }).passed) return;
  for (const [n, m] of Object.entries(mounts)) t.log(`${n}:\n${m.log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-25).join('\n')}`);
}
