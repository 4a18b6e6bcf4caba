/**
 * `vpoolfs move FILE --to ROUTER` from a test (ownership per vDisk, docs/cluster.md) and the routers' warnings and
 * errors printed when a test failed — for the cluster tests through real mounts (test/cluster-netns-vdisk-*.test.ts).
 */
import type { ExecutionContext } from 'ava';
import { CLI, q, sh, type MountHandle, type ShResult } from './mount.js';
import type { Cluster } from './registry.js';

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
