/**
 * For the per-vDisk ownership tests through real mounts (test/cluster-netns-vdisk-*.test.ts; docs/cluster.md,
 * "Ownership per vDisk"): `vpoolfs move FILE --to ROUTER`, the check that every acknowledged block of a writer
 * (helpers/dtl-mount.ts) reads back through some mounts, and the routers' warnings and errors when a test failed.
 */
import type { ExecutionContext } from 'ava';
import { CLI, q, sh, type MountHandle, type ShResult } from './mount.js';
import type { Cluster } from './registry.js';
import { badBlocks } from './dtl-mount.js';

/** Runs the move; fails the test unless it exits 0 (`extra`: e.g. `--force`). Logs its last line (the time it took). */
export async function moveVDisk(t: ExecutionContext, c: Cluster, file: string, to: string, extra = ''): Promise<ShResult> {
  const r = await sh(`node ${q(CLI)} move ${q(file)} --to ${to} --registry ${q(c.etcd.url)} ${extra}`);
  t.is(r.code, 0, `move ${file} --to ${to}:\n${r.stdout}\n${r.stderr}`);
  t.log(r.stdout.trim().split('\n').pop());
  return r;
}

/** On failure: the last warnings and errors of each router's log. */
export function explainLogs(t: ExecutionContext, mounts: Record<string, MountHandle>): void {
  if ((t as unknown as { passed: boolean }).passed) return;
  for (const [n, m] of Object.entries(mounts)) t.log(`${n}:\n${m.log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-25).join('\n')}`);
}

/** Every block of `acked` (a writer's acknowledged indices) reads back at `file` (a path in the vPool) through each of `mounts`. */
export async function allThere(t: ExecutionContext, acked: number[], file: string[], mounts: MountHandle[]): Promise<void> {
  for (const m of mounts) {
    const bad = await badBlocks(t, m.p(...file), acked);
    t.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${acked.length} acknowledged writes missing through ${m.mountpoint}`);
  }
}
