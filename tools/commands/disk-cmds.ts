/**
 * The vDisk verbs of the CLI, over the management API (api/): `ls [-l] [PATH]`, `du [PATH]`, `info FILE`,
 * `create FILE SIZE`, `resize FILE SIZE`, `rm FILE…`. Sizes print like `ls -lh` unless `--json`.
 */
import type { Command } from 'commander';
import type { EntryView, VDiskView } from '../../api/views.js';
import { onPool, say, vdiskUrl, type VerbOpts } from '../client/api-call.js';
import { parseSize } from '../daemon/config.js';
import { humanBytes, isoTime, modeString, table } from '../client/human.js';

function parentText(v: VDiskView): string {
  return v.parent ? `${v.parent.path}@${v.parent.snapshot}` : '-';
}

/** The last scrub run (outcome, when, what it freed), the applied scrub if it is another, and the garbage left. */
function scrubText(v: VDiskView): string {
  const { last, lastRun, garbageBytes, running } = v.scrub;
  const parts: string[] = [];
  if (running) parts.push('running now');
  if (lastRun !== null) {
    parts.push(`${lastRun.outcome} at ${isoTime(lastRun.at)} in ${(lastRun.ms / 1000).toFixed(1)} s, freed ${humanBytes(lastRun.freedBytes)}${lastRun.error ? ` (${lastRun.error})` : ''}`);
  }
  if (last !== null && (lastRun === null || lastRun.outcome !== 'applied')) parts.push(`applied scrub ${last.id} (ran ${isoTime(last.ranAt)})`);
  if (parts.length === 0) return 'never';
  return `${parts.join('; ')}; ${humanBytes(garbageBytes)} garbage left`;
}

function infoText(v: VDiskView, given: string): string {
  const rows: Array<[string, string]> = [
    ['path', `${given} (${v.path} in the vPool)`],
    ['id', v.id],
    ['size', `${humanBytes(v.size)} (${v.size} bytes)`],
    ['allocated', `${humanBytes(v.allocatedBytes)}: own ${humanBytes(v.ownBytes)}, inherited ${humanBytes(v.inheritedBytes)}`],
    ['in backend', humanBytes(v.backendBytes)],
    ['dirty', `${humanBytes(v.dirtyBytes)} (upload backlog: ${v.uploadBacklog.scos} SCOs, ${v.uploadBacklog.tlogs} TLogs)`],
    ['template', v.template ? 'yes (read-only)' : 'no'],
    ['parent', parentText(v)],
    ['clones', v.clones.join(', ') || '-'],
    ['snapshots', v.snapshots.map((s) => s.name).join(', ') || '-'],
    ['dtl', `${v.dtl.mode}, ${v.dtl.state}${v.dtl.server ? ` via ${v.dtl.server}` : ''}`],
    ['open handles', String(v.openHandles)],
    ['router', v.router],
    ['fault', v.fault ? `${v.fault.code} since ${isoTime(v.fault.since)}: ${v.fault.message}` : '-'],
    ['last scrub', scrubText(v)],
  ];
  return rows.map(([k, val]) => `${(k + ':').padEnd(14)}${val}`).join('\n');
}

const LONG_HEAD = ['MODE', 'SIZE', 'ALLOC', 'OWN', 'BACKEND', 'SNAPS', 'DTL', 'OPEN', 'PARENT', 'NAME'];

function longRow(e: EntryView): string[] {
  if (e.kind === 'dir') return [modeString(e.mode, true), '-', '-', '-', '-', '-', '-', '-', '-', `${e.name}/`];
  const v = e.vdisk!;
  return [modeString(e.mode, false), humanBytes(v.size), humanBytes(v.allocatedBytes), humanBytes(v.ownBytes), humanBytes(v.backendBytes), String(v.snapshots.length), v.dtl.mode, String(v.openHandles), parentText(v), e.name + (v.template ? ' (template)' : '')];
}

async function ls(file: string | undefined, opts: VerbOpts & { long?: boolean }): Promise<void> {
  const pool = await onPool(file ?? '.', opts);
  let entries: EntryView[];
  let body: unknown;
  try {
    body = await pool.api<{ entries: EntryView[] }>('GET', `/v1/entries?dir=${encodeURIComponent(pool.vpoolPath)}`);
    entries = (body as { entries: EntryView[] }).entries;
  } catch (err) {
    // a vDisk: list just it, as ls does for a file
    if ((err as { body?: { code?: string } }).body?.code !== 'NOT_DIR') throw err;
    const v = await pool.api<VDiskView>('GET', vdiskUrl(pool.vpoolPath));
    const name = pool.vpoolPath.slice(pool.vpoolPath.lastIndexOf('/') + 1);
    entries = [{ name, path: v.path, kind: 'vdisk', mode: v.mode, uid: v.uid, gid: v.gid, mtime: v.mtime, vdisk: v }];
    body = { dir: null, entries };
  }
  say(opts, body, () => {
    if (!opts.long) return entries.map((e) => (e.kind === 'dir' ? `${e.name}/` : e.name)).join('\n');
    return table(LONG_HEAD, entries.map(longRow));
  });
}

async function du(file: string | undefined, opts: VerbOpts & { all?: boolean }): Promise<void> {
  const pool = await onPool(file ?? '.', opts);
  let vdisks: VDiskView[];
  try {
    vdisks = (await pool.api<{ vdisks: VDiskView[] }>('GET', `/v1/vdisks?dir=${encodeURIComponent(pool.vpoolPath)}`)).vdisks;
  } catch (err) {
    if ((err as { body?: { code?: string } }).body?.code !== 'NOT_DIR') throw err;
    vdisks = [await pool.api<VDiskView>('GET', vdiskUrl(pool.vpoolPath))];
  }
  const total = { own: 0, inherited: 0, backend: 0, size: 0 };
  for (const v of vdisks) {
    total.own += v.ownBytes;
    total.inherited += v.inheritedBytes;
    total.backend += v.backendBytes;
    total.size += v.size;
  }
  say(opts, { path: pool.vpoolPath.slice(1), vdisks: vdisks.map((v) => ({ path: v.path, size: v.size, ownBytes: v.ownBytes, inheritedBytes: v.inheritedBytes, backendBytes: v.backendBytes })), total: { sizeBytes: total.size, ownBytes: total.own, inheritedBytes: total.inherited, backendBytes: total.backend } }, () => {
    const rows = vdisks.map((v) => [humanBytes(v.ownBytes), humanBytes(v.inheritedBytes), humanBytes(v.backendBytes), humanBytes(v.size), v.path]);
    rows.push([humanBytes(total.own), humanBytes(total.inherited), humanBytes(total.backend), humanBytes(total.size), `total (${vdisks.length} vDisk${vdisks.length === 1 ? '' : 's'}; own bytes count once, inherited ones are the parents')`]);
    return table(['OWN', 'INHERITED', 'BACKEND', 'SIZE', 'PATH'], rows);
  });
}

export function addDiskCommands(program: Command, run: (fn: () => Promise<void>) => Promise<void>): void {
  program
    .command('ls')
    .description('list a directory of a mounted vPool (or one vDisk); -l: size, allocated, own, backend bytes, snapshots, DTL, open handles, parent')
    .argument('[path]', 'a directory or vDisk on a mounted vPool (default: the current directory)')
    .option('-l, --long', 'one line per entry with its figures')
    .option('--json', 'the API answer as JSON')
    .action((file: string | undefined, o: VerbOpts & { long?: boolean }) => run(() => ls(file, o)));

  program
    .command('du')
    .description("space used under a path of a mounted vPool: each vDisk's own bytes (a clone's parent data is counted as inherited, once, with the parent)")
    .argument('[path]', 'a directory or vDisk (default: the current directory)')
    .option('--json', 'machine-readable output')
    .action((file: string | undefined, o: VerbOpts) => run(() => du(file, o)));

  program
    .command('info')
    .description("a vDisk's figures: size, allocated (own, inherited), in backend, dirty, parent, clones, snapshots, DTL, open handles, last scrub")
    .argument('<file>')
    .option('--json', 'the API answer as JSON')
    .action((file: string, o: VerbOpts) =>
      run(async () => {
        const pool = await onPool(file, o);
        const v = await pool.api<VDiskView>('GET', vdiskUrl(pool.vpoolPath));
        say(o, v, () => infoText(v, file));
      }),
    );

  program
    .command('create')
    .description('create a thin vDisk of SIZE (like 10G, 512M, 4096) on a mounted vPool; nothing is left behind if it fails')
    .argument('<file>')
    .argument('<size>')
    .option('--json', 'the new vDisk as JSON')
    .action((file: string, size: string, o: VerbOpts) =>
      run(async () => {
        const bytes = parseSize(size);
        const pool = await onPool(file, o);
        const v = await pool.api<VDiskView>('POST', '/v1/vdisks', { path: pool.vpoolPath, size: bytes });
        say(o, v, () => `created ${file}: ${humanBytes(v.size)} (${v.size} bytes), thin`);
      }),
    );

  program
    .command('resize')
    .description('set the size of a vDisk (a shrink discards the data past the new size)')
    .argument('<file>')
    .argument('<size>')
    .option('--json', 'the vDisk as JSON')
    .action((file: string, size: string, o: VerbOpts) =>
      run(async () => {
        const bytes = parseSize(size);
        const pool = await onPool(file, o);
        const v = await pool.api<VDiskView>('PATCH', vdiskUrl(pool.vpoolPath), { size: bytes });
        say(o, v, () => `${file}: ${humanBytes(v.size)} (${v.size} bytes)`);
      }),
    );

  program
    .command('rm')
    .description('delete vDisks (refused while one has clones or is open); their backend objects go in the background')
    .argument('<files...>')
    .option('--json', 'machine-readable output')
    .action((files: string[], o: VerbOpts) =>
      run(async () => {
        const done: string[] = [];
        for (const file of files) {
          const pool = await onPool(file, o);
          await pool.api('DELETE', vdiskUrl(pool.vpoolPath));
          done.push(file);
          if (!o.json) console.log(`removed ${file}`);
        }
        if (o.json) console.log(JSON.stringify({ removed: done }));
      }),
    );
}
