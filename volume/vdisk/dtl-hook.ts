/**
 * The seam between a vDisk and its Distributed Transaction Log (DESIGN §4; implemented in dtl-client/).
 * The vDisk tells its sink, under its lock and in order, every change it makes to its write cache
 * (clusters, resizes, discards); it waits on the sink before acknowledging a write and an fsync; it reports each
 * cork. The sink of mode `none` does nothing. The vPool gets a DtlProvider from the composition root
 * (tools/commands/mount-cmd.ts), so the volume layer never imports the DTL client.
 *
 * A vDisk's mode is kept in the metadata store (`vd/<id>/dtl`) and in its vDisk document, which the backend
 * has too (../lineage/snapshot-store.ts), so a vDisk rebuilt on another router keeps it; a vDisk that never had its mode
 * set takes the provider's default mode.
 */
import { VolumeError } from '../../util/errors.js';
import type { DtlMode } from '../types.js';
import type { VDiskImpl } from './vdisk.js';
import { NO_DTL } from './dtl-sink.js';

// the provider's seam lives in dtl-sink.ts (no vDisk import there: vdisk-context.ts names it without a cycle)
export type { DtlProvider } from './dtl-sink.js';

export const DTL_MODES: readonly DtlMode[] = ['none', 'async', 'sync'];
const dtlKey = (id: string): string => `vd/${id}/dtl`;

/** Gives a freshly opened or created vDisk its sink, in its recorded mode (else the default). */
export function attachDtl(v: VDiskImpl): void {
  const provider = v.ctx.dtl;
  if (provider === undefined) return;
  const mode = dtlModeOf(v);
  if (mode !== 'none') v.attachDtl(provider.sink(v, mode));
}

/** The vDisk's recorded DTL mode, else the mount's default ('none' without DTL servers). */
export function dtlModeOf(v: VDiskImpl): DtlMode {
  const provider = v.ctx.dtl;
  if (provider === undefined) return 'none';
  const raw = v.ctx.mds.get(dtlKey(v.id))?.toString() ?? v.docs.doc.dtlMode;
  return raw !== undefined && (DTL_MODES as string[]).includes(raw) ? (raw as DtlMode) : provider.defaultMode;
}

/** `user.vdisk.dtl`: changes the vDisk's mode live and records it. INVALID without a DTL server for async/sync. */
export async function setDtlMode(v: VDiskImpl, mode: DtlMode): Promise<void> {
  if (!DTL_MODES.includes(mode)) throw new VolumeError('INVALID', `DTL mode must be none, async or sync, got ${JSON.stringify(mode)}`, { vdisk: v.id });
  const provider = v.ctx.dtl;
  if (mode !== 'none' && provider === undefined) throw new VolumeError('INVALID', `DTL mode ${mode} needs a DTL server: mount with --dtl-server`, { vdisk: v.id });
  await v.exclusive(async () => {
    if (v.dtl.mode !== mode) v.replaceDtl(mode === 'none', () => (mode === 'none' ? NO_DTL : provider!.sink(v, mode)));
    // locally and in the vDisk document, in one commit; the document is then shipped to the backend
    const doc = { ...(JSON.parse(JSON.stringify(v.docs.doc)) as typeof v.docs.doc), dtlMode: mode };
    await v.docs.commit(doc, [{ key: dtlKey(v.id), value: Buffer.from(mode) }]);
  });
}
