/**
 * The snapshot verbs of the CLI (DESIGN §1), each a thin wrapper over one `user.vdisk.*` xattr of §3 run
 * with `setfattr`/`getfattr`, so that a shell script and the CLI do exactly the same thing:
 *
 *   snapshot create FILE NAME [--sticky]   snapshot list FILE   snapshot delete FILE NAME
 *   snapshot sticky FILE NAME [--off]      rollback FILE NAME   clone FILE NEWFILE [--snapshot NAME]
 *   template FILE
 *
 * A refusal prints the errno's meaning and name (`File exists (EEXIST)`) and exits 1.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import type { SnapshotInfo } from '../volume/types.js';
import { ConfigError } from './config.js';

const run = promisify(execFile);

const ERRNO_NAMES: Array<[RegExp, string]> = [
  [/File exists/, 'EEXIST'],
  [/No such file or directory/, 'ENOENT'],
  [/Invalid argument/, 'EINVAL'],
  [/Device or resource busy/, 'EBUSY'],
  [/Read-only file system/, 'EROFS'],
  [/Operation not supported/, 'ENOTSUP'],
  [/Input\/output error/, 'EIO'],
  [/Is a directory/, 'EISDIR'],
];

function refusal(what: string, file: string, err: unknown): ConfigError {
  const stderr = String((err as { stderr?: unknown }).stderr ?? (err as Error).message ?? err).trim();
  const known = ERRNO_NAMES.find(([re]) => re.test(stderr));
  const cause = known ? `${stderr.slice(stderr.lastIndexOf(':') + 1).trim()} (${known[1]})` : stderr;
  return new ConfigError(`${what} ${file}: ${cause}`);
}

/** setfattr -n NAME -v VALUE FILE; the value goes as text (setfattr would decode a 0x/0s prefix: escape it). */
export async function setVdiskXattr(file: string, name: string, value: string, what: string): Promise<void> {
  const v = /^0[xXsS]/.test(value) ? `"${value}"` : value;
  try {
    await run('setfattr', ['-n', name, '-v', v, '--', file]);
  } catch (err) {
    throw refusal(what, file, err);
  }
}

/** getfattr -n NAME --only-values FILE, parsed as JSON. */
export async function getVdiskView(file: string, name: string, what: string): Promise<unknown> {
  try {
    const { stdout } = await run('getfattr', ['--only-values', '-n', name, '--', file], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    throw refusal(what, file, err);
  }
}

function listText(list: SnapshotInfo[]): string {
  if (list.length === 0) return '(no snapshots)';
  const rows = list.map((s) => [s.name, new Date(s.timestamp).toISOString(), s.sticky ? 'sticky' : '-', s.automatic ? 'auto' : '-', s.inBackend ? 'yes' : 'no', s.clones.join(',') || '-']);
  const head = ['NAME', 'TIME', 'STICKY', 'AUTO', 'IN BACKEND', 'CLONES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** The absolute path of NEWFILE with its directory's symlinks resolved (the daemon compares it with its canonical mountpoint). */
function canonical(file: string): string {
  const abs = path.resolve(file);
  try {
    return path.join(realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

const say = (json: boolean, obj: unknown, text: string): void => console.log(json ? JSON.stringify(obj) : text);

async function snapshotOf(file: string, name: string): Promise<SnapshotInfo | undefined> {
  const list = (await getVdiskView(file, 'user.vdisk.snapshots', 'snapshot list')) as SnapshotInfo[];
  return list.find((s) => s.name === name);
}

/** Adds the verbs to `program`; `fail` reports an error and exits. */
export function addSnapshotCommands(program: Command, fail: (err: unknown) => never): void {
  const snapshot = program.command('snapshot').description('snapshots of a vDisk: create, list, delete, sticky');
  snapshot
    .command('create')
    .description('take a snapshot (user.vdisk.snapshot, or user.vdisk.snapshot.sticky with --sticky)')
    .argument('<file>').argument('<name>')
    .option('--sticky', 'never removed by automatic retention')
    .option('--json', 'machine-readable output')
    .action(async (file: string, name: string, o: { sticky?: boolean; json?: boolean }) => {
      try {
        await setVdiskXattr(file, o.sticky ? 'user.vdisk.snapshot.sticky' : 'user.vdisk.snapshot', name, 'snapshot create');
        say(!!o.json, (await snapshotOf(file, name)) ?? { name }, `snapshot ${name} of ${file} taken`);
      } catch (err) {
        fail(err);
      }
    });
  snapshot
    .command('list')
    .description('the snapshots, oldest first (user.vdisk.snapshots)')
    .argument('<file>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { json?: boolean }) => {
      try {
        const list = (await getVdiskView(file, 'user.vdisk.snapshots', 'snapshot list')) as SnapshotInfo[];
        say(!!o.json, list, listText(list));
      } catch (err) {
        fail(err);
      }
    });
  snapshot
    .command('delete')
    .description('delete a snapshot (user.vdisk.snapshot.delete)')
    .argument('<file>').argument('<name>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, name: string, o: { json?: boolean }) => {
      try {
        await setVdiskXattr(file, 'user.vdisk.snapshot.delete', name, 'snapshot delete');
        say(!!o.json, { file, deleted: name }, `snapshot ${name} of ${file} deleted`);
      } catch (err) {
        fail(err);
      }
    });
  snapshot
    .command('sticky')
    .description('make a snapshot sticky, or not with --off (user.vdisk.snapshot.sticky / .unstick)')
    .argument('<file>').argument('<name>')
    .option('--off', 'clear the sticky flag')
    .option('--json', 'machine-readable output')
    .action(async (file: string, name: string, o: { off?: boolean; json?: boolean }) => {
      try {
        await setVdiskXattr(file, o.off ? 'user.vdisk.snapshot.unstick' : 'user.vdisk.snapshot.sticky', name, 'snapshot sticky');
        say(!!o.json, { file, name, sticky: !o.off }, `snapshot ${name} of ${file} is ${o.off ? 'no longer ' : ''}sticky`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('rollback')
    .description('roll a vDisk back to a snapshot; later snapshots are dropped (user.vdisk.rollback)')
    .argument('<file>').argument('<name>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, name: string, o: { json?: boolean }) => {
      try {
        await setVdiskXattr(file, 'user.vdisk.rollback', name, 'rollback');
        say(!!o.json, { file, rolledBackTo: name }, `${file} rolled back to ${name}`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('clone')
    .description('create NEWFILE from a snapshot of FILE; without --snapshot, from a snapshot taken now (user.vdisk.clone)')
    .argument('<file>').argument('<newfile>')
    .option('--snapshot <name>', 'the snapshot to clone')
    .option('--json', 'machine-readable output')
    .action(async (file: string, newfile: string, o: { snapshot?: string; json?: boolean }) => {
      try {
        await setVdiskXattr(file, 'user.vdisk.clone', `${o.snapshot ?? ''}:${canonical(newfile)}`, 'clone');
        const info = (await getVdiskView(newfile, 'user.vdisk.info', 'clone')) as { parent: unknown };
        say(!!o.json, { file: newfile, parent: info.parent }, `${newfile} cloned from ${file}`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('template')
    .description('make a vDisk a read-only template, a source for clones (user.vdisk.template)')
    .argument('<file>')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { json?: boolean }) => {
      try {
        await setVdiskXattr(file, 'user.vdisk.template', '1', 'template');
        say(!!o.json, { file, template: true }, `${file} is a template`);
      } catch (err) {
        fail(err);
      }
    });
}
