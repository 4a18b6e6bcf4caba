/**
 * The snapshot verbs of the CLI (DESIGN §1), over the management API (api/routes-snapshots.ts), which does
 * what the `user.vdisk.*` xattrs do (those keep working for shell scripts) and says why when it refuses:
 *
 *   snapshot create FILE NAME [--sticky]   snapshot list FILE   snapshot delete FILE NAME
 *   snapshot sticky FILE NAME [--off]      rollback FILE NAME   clone FILE NEWFILE [--snapshot NAME]
 *   template FILE
 *
 * A refusal prints the API's sentence (which snapshot, which path, why) and the errno name, and exits 1.
 */
import type { Command } from 'commander';
import type { SnapshotView, VDiskView } from '../../api/views.js';
import { onPool, say, vdiskUrl, type VerbOpts } from '../client/api-call.js';
import { isoTime, table } from '../client/human.js';
import { LocateError } from '../client/locate.js';
import { withProgressBar } from '../client/progress.js';

function listText(list: SnapshotView[]): string {
  if (list.length === 0) return '(no snapshots)';
  const rows = list.map((s) => [s.name, isoTime(s.timestamp), s.sticky ? 'sticky' : '-', s.automatic ? 'auto' : '-', s.inBackend ? 'yes' : 'no', s.clones.join(',') || '-']);
  return table(['NAME', 'TIME', 'STICKY', 'AUTO', 'IN BACKEND', 'CLONES'], rows);
}

const snapUrl = (p: string, name?: string) => vdiskUrl(p, name === undefined ? '/snapshots' : `/snapshots/${encodeURIComponent(name)}`);

/** Adds the verbs to `program`; `run` reports an error and exits. */
export function addSnapshotCommands(program: Command, run: (fn: () => Promise<void>) => Promise<void>): void {
  const snapshot = program.command('snapshot').description('snapshots of a vDisk: create, list, delete, sticky');
  snapshot
    .command('create')
    .description('take a snapshot')
    .argument('<file>').argument('<name>')
    .option('--sticky', 'never removed by automatic retention')
    .option('--json', 'the snapshot as JSON')
    .action((file: string, name: string, o: VerbOpts & { sticky?: boolean }) =>
      run(async () => {
        const pool = await onPool(file, o);
        const s = await pool.api<SnapshotView>('POST', snapUrl(pool.vpoolPath), { name, sticky: !!o.sticky });
        say(o, s, () => `snapshot ${name} of ${file} taken${s.sticky ? ' (sticky)' : ''}`);
      }),
    );
  snapshot
    .command('list')
    .description('the snapshots, oldest first')
    .argument('<file>')
    .option('--json', 'machine-readable output')
    .action((file: string, o: VerbOpts) =>
      run(async () => {
        const pool = await onPool(file, o);
        const list = await pool.api<SnapshotView[]>('GET', snapUrl(pool.vpoolPath));
        say(o, list, () => listText(list));
      }),
    );
  snapshot
    .command('delete')
    .description('delete a snapshot (refused while it has clones)')
    .argument('<file>').argument('<name>')
    .option('--json', 'machine-readable output')
    .action((file: string, name: string, o: VerbOpts) =>
      run(async () => {
        const pool = await onPool(file, o);
        await pool.api('DELETE', snapUrl(pool.vpoolPath, name));
        say(o, { path: pool.vpoolPath.slice(1), deleted: name }, () => `snapshot ${name} of ${file} deleted`);
      }),
    );
  snapshot
    .command('sticky')
    .description('make a snapshot sticky (never removed by automatic retention), or not with --off')
    .argument('<file>').argument('<name>')
    .option('--off', 'clear the sticky flag')
    .option('--json', 'the snapshot as JSON')
    .action((file: string, name: string, o: VerbOpts & { off?: boolean }) =>
      run(async () => {
        const pool = await onPool(file, o);
        const s = await pool.api<SnapshotView>('PATCH', snapUrl(pool.vpoolPath, name), { sticky: !o.off });
        say(o, s, () => `snapshot ${name} of ${file} is ${o.off ? 'no longer ' : ''}sticky`);
      }),
    );

  program
    .command('rollback')
    .description('roll a vDisk back to a snapshot; later snapshots are dropped (refused while it is open)')
    .argument('<file>').argument('<name>')
    .option('--json', 'the vDisk as JSON')
    .option('--progress', 'a progress line on stderr while it waits for the backend, even when stderr is not a terminal')
    .action((file: string, name: string, o: VerbOpts & { progress?: boolean }) =>
      run(async () => {
        const pool = await onPool(file, o);
        const v = await withProgressBar({ force: !!o.progress, label: `rollback ${file}` }, () => pool.api<VDiskView>('GET', vdiskUrl(pool.vpoolPath)),
          pool.api<VDiskView>('POST', vdiskUrl(pool.vpoolPath, '/rollback'), { snapshot: name }));
        say(o, v, () => `${file} rolled back to ${name}`);
      }),
    );

  program
    .command('clone')
    .description('create NEWFILE from a snapshot of FILE; without --snapshot, from a snapshot taken now')
    .argument('<file>').argument('<newfile>', 'the new vDisk: a path on the same vPool (relative to the current directory, like any path)')
    .option('--snapshot <name>', 'the snapshot to clone')
    .option('--json', 'the new vDisk as JSON')
    .option('--progress', "a progress line on stderr while the parent's data ships to the backend, even when stderr is not a terminal")
    .action((file: string, newfile: string, o: VerbOpts & { snapshot?: string; progress?: boolean }) =>
      run(async () => {
        const pool = await onPool(file, o);
        const target = await onPool(newfile, o).catch((err: unknown) => {
          throw err instanceof LocateError ? new LocateError(`clone ${file} to ${newfile}: a clone lives on the vPool of its parent (${pool.info.mountpoint}); ${err.message}`) : err;
        });
        if (target.info.socket !== pool.info.socket) throw new LocateError(`clone ${file} to ${newfile}: ${newfile} is on another vPool (${target.info.mountpoint}) than ${file} (${pool.info.mountpoint})`);
        const v = await withProgressBar({ force: !!o.progress, label: `clone ${file}` }, () => pool.api<VDiskView>('GET', vdiskUrl(pool.vpoolPath)),
          pool.api<VDiskView>('POST', vdiskUrl(pool.vpoolPath, '/clones'), { target: target.vpoolPath, ...(o.snapshot !== undefined ? { snapshot: o.snapshot } : {}) }));
        say(o, v, () => `${newfile} cloned from ${file}@${v.parent?.snapshot}`);
      }),
    );

  program
    .command('template')
    .description('make a vDisk a read-only template, a source for clones (all but its last snapshot removed)')
    .argument('<file>')
    .option('--json', 'the vDisk as JSON')
    .action((file: string, o: VerbOpts) =>
      run(async () => {
        const pool = await onPool(file, o);
        const v = await pool.api<VDiskView>('POST', vdiskUrl(pool.vpoolPath, '/template'));
        say(o, v, () => `${file} is a template (read-only)`);
      }),
    );
}
