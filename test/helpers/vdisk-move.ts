/**
 * Steps of the per-vDisk move tests through real daemons (test/vdisk-move-kill.test.ts, test/vdisk-takeback.test.ts):
 * `vpoolfs move FILE --to ROUTER`, the unsafe dead delegate, every acknowledged block of a writer through some mounts
 * (and after a rebuild elsewhere), and the routers'
 * warnings and errors logged when a test failed.
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { badBlocks, type Writer } from './dtl-mount.js';
import { startDtlServer } from './dtl-server.js';
import { CLI, logEntries, ok, q, sh, startMount, type MountHandle } from './mount.js';
import type { Cluster } from './registry.js';
import { until } from './until.js';

/**
 * A DTL server and the vPool's owner ra with a sync DTL on it (`config`: ra's), /disk (128 MiB) made through it;
 * `dtl` the mount options the other routers take for the same DTL.
 */
export async function syncDtlOwner(t: ExecutionContext, c: Cluster, config: Record<string, unknown> = {}): Promise<{ dtl: string[]; a: MountHandle }> {
  const srv = await startDtlServer(t, path.join(c.root, 'dtl'));
  const dtl = ['--dtl', 'sync', '--dtl-server', srv.address];
  const a = await startMount(t, c.router('ra', dtl, config));
  await ok(t, `truncate -s 128M ${q(a.p('disk'))}`);
  return { dtl, a };
}

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

/**
 * The end of a test: every acknowledged block of `w` through each of `mounts`, which then stop cleanly in that
 * order (the vPool's owner first; everything shipped), and through a third router rc with a fresh state directory
 * (started with `extra`: the DTL) rebuilding the vPool from the backend. Returns rc.
 */
export async function allThereAndRebuilt(t: ExecutionContext, c: Cluster, w: Writer, mounts: MountHandle[], extra: string[] = []): Promise<MountHandle> {
  await allThere(t, w, mounts);
  for (const m of mounts) t.is(await m.stop(), 0);
  const rc = await startMount(t, c.router('rc', extra));
  await allThere(t, w, [rc]);
  return rc;
}

/** The logs' warnings and errors, on failure. */
export function explain(t: ExecutionContext, mounts: Record<string, MountHandle>): void {
  if ((t as unknown as { passed: boolean }).passed) return;
  for (const [n, m] of Object.entries(mounts)) t.log(`${n}:\n${m.log.split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-25).join('\n')}`);
}

/** What the owner logs when it refuses to take /disk back from the dead rb by itself. */
export const REFUSED = /^vDisk \/disk stays unavailable: vDisk \/disk is not taken back automatically from dead router 'rb' \(owner tag \d+\): its writes not yet in the backend may be lost \(DTL none, ok_standalone, unshipped since /;

/** The unsafe dead delegate: rb killed with 4 unshipped writes and no DTL; ra refuses to take /disk back. */
export async function deadUnsafeDelegate(t: ExecutionContext, c: Cluster): Promise<{ a: MountHandle; b: MountHandle }> {
  const a = await startMount(t, c.router('ra'));
  await ok(t, `truncate -s 16M ${q(a.p('disk'))}`);
  const b = await startMount(t, c.router('rb', [], { scoMaxAgeMs: 600_000 }));
  await moveTo(t, c, a.p('disk'), 'rb');
  await ok(t, `dd if=/dev/urandom of=${q(b.p('disk'))} bs=4096 count=4 conv=notrunc status=none`);
  await until('rb records /disk unshipped without a DTL', async () => {
    const d = (await c.routers()).find((r) => r.name === 'rb')?.vdisks.find((v) => v.path === '/disk') as { dtl?: { mode: string; dirty: boolean } } | undefined;
    return d?.dtl?.mode === 'none' && d.dtl.dirty;
  });
  await b.kill9();
  await until('ra refuses to take /disk back from the dead rb', () => logEntries(a.log, REFUSED).length > 0);
  return { a, b };
}
