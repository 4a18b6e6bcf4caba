/**
 * The `user.vdisk.*` management API of DESIGN §3, as two tables: commands (`setfattr -n NAME -v VALUE`,
 * resolved once the operation is done) and views (`getfattr -n NAME`, JSON). Each feature keeps its own
 * entries in a file of its own and is merged in below, so this file only dispatches. A name in neither
 * table is ENOTSUP. Commands and views throw VpoolErrors; fuse/xattr.ts turns them into errnos and logs them.
 */
import { VolumeError } from '../util/errors.js';
import type { VDiskInfo, VPool } from '../volume/types.js';
import { snapshotTable } from './xattr-snapshot.js';
import { dtlTable } from './xattr-dtl.js';
import { scrubTable } from './xattr-scrub.js';
import type { VdiskCommand, VdiskView, VdiskXattrTable } from './xattr-table.js';

/**
 * What both `user.vdisk.info` and the API's vDisk view (api/views.ts) show of a VDiskInfo: all of it but the
 * two figures that are metrics only (the upload lag and the DTL's queued bytes, tools/metrics/).
 */
export function shownInfo(i: VDiskInfo): Omit<VDiskInfo, 'uploadLagMs' | 'dtlQueuedBytes'> {
  const { uploadLagMs, dtlQueuedBytes, ...shown } = i;
  void uploadLagMs;
  void dtlQueuedBytes;
  return shown;
}

/** `user.vdisk.info`: what a vDisk is and where its data stands. */
function infoView(vpool: VPool, path: string): unknown {
  return {
    // fault: null, or why the state disk stopped this vDisk (EIO: writes and fsyncs refused) or holds its writes (ENOSPC)
    ...shownInfo(vpool.vdisk(path).info()),
    // the last scrub applied (last: null if never), how the last run here ended (lastRun: when, outcome, freed,
    // error), the garbage it left, whether one runs and where it stands, this process's last report
    scrub: scrubInfo(vpool, path),
  };
}

function scrubInfo(vpool: VPool, path: string): unknown {
  const st = vpool.scrub.statusAt(path);
  return { last: st.last, lastRun: st.lastRun, garbageBytes: st.garbageBytes, running: st.running, progress: st.progress, lastReport: st.lastReport };
}

const core: VdiskXattrTable = {
  commands: {},
  views: { 'user.vdisk.info': infoView },
};

/** Every feature's table, merged. A later table may not redefine a name. */
const tables: VdiskXattrTable[] = [core, snapshotTable, dtlTable, scrubTable];

const commands = new Map<string, VdiskCommand>();
const views = new Map<string, VdiskView>();
for (const t of tables) {
  for (const [name, fn] of Object.entries(t.commands)) {
    if (commands.has(name) || views.has(name)) throw new Error(`user.vdisk attribute defined twice: ${name}`);
    commands.set(name, fn);
  }
  for (const [name, fn] of Object.entries(t.views)) {
    if (commands.has(name) || views.has(name)) throw new Error(`user.vdisk attribute defined twice: ${name}`);
    views.set(name, fn);
  }
}

/** The view names, for listxattr on a vDisk. */
export const VIEW_NAMES: readonly string[] = [...views.keys()];

function decode(name: string, value: Uint8Array): string {
  const text = Buffer.from(value).toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(Buffer.from(value))) throw new VolumeError('INVALID', `${name}: the value is not valid UTF-8`, { name });
  return text;
}

/** Runs the command NAME on the vDisk at `path`. NOT_SUPPORTED for a view or an unknown name. */
export async function runVdiskCommand(vpool: VPool, path: string, name: string, value: Uint8Array): Promise<void> {
  const fn = commands.get(name);
  if (!fn) {
    if (views.has(name)) throw new VolumeError('NOT_SUPPORTED', `${name} is a view: read it with getfattr`, { path, name });
    throw new VolumeError('NOT_SUPPORTED', `unknown attribute ${name}`, { path, name });
  }
  if (vpool.stat(path).kind !== 'file') throw new VolumeError('IS_DIR', `${name}: ${path} is a directory, not a vDisk`, { path, name });
  await fn(vpool, path, decode(name, value));
}

/** The view NAME of the vDisk at `path`, as JSON bytes. NOT_SUPPORTED for a command or an unknown name. */
export async function readVdiskView(vpool: VPool, path: string, name: string): Promise<Buffer> {
  const fn = views.get(name);
  if (!fn) {
    const what = commands.has(name) ? `${name} is a command: set it with setfattr` : `unknown attribute ${name}`;
    throw new VolumeError('NOT_SUPPORTED', what, { path, name });
  }
  if (vpool.stat(path).kind !== 'file') throw new VolumeError('IS_DIR', `${name}: ${path} is a directory, not a vDisk`, { path, name });
  return Buffer.from(JSON.stringify(await fn(vpool, path)));
}
