/**
 * `vpoolfs backend-move [MOUNTPOINT] [--status] [--json]`: where a backend move stands (docs/scrubbing.md, "Policy
 * updates"). The move itself starts at mount (`--backend NEW --move-from OLD`); without --status this waits
 * until the move job ends (progress on stderr) and exits 1 if it failed. Speaks to `GET /v1/backend-move`.
 * registerMoveMetrics(): the move job's Prometheus gauges (the daemon's side).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { Gauge, type Registry } from 'prom-client';
import type { MoveJob, MoveStatus } from '../../volume/policy/move-job.js';
import { onPool, say, type VerbOpts } from '../client/api-call.js';
import { humanBytes } from '../client/human.js';
import { locate, onlyVpool } from '../client/locate.js';

export function registerMoveMetrics(registry: Registry, job: MoveJob): void {
  const g = (name: string, help: string, value: (s: MoveStatus) => number): Gauge =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(value(job.status())); } });
  g('vpoolfs_move_running', 'The backend move job is running', (s) => (s.state === 'running' ? 1 : 0));
  g('vpoolfs_move_done', 'The backend move switched to the new backend', (s) => (s.state === 'done' ? 1 : 0));
  g('vpoolfs_move_objects_listed', "Objects in the move job's current pass", (s) => s.listed);
  g('vpoolfs_move_objects_checked', "Objects of the move job's current pass checked so far", (s) => s.checked);
  g('vpoolfs_move_objects_copied', 'Objects copied to the new backend since the job started', (s) => s.copied);
  g('vpoolfs_move_bytes_copied', 'Bytes copied to the new backend since the job started', (s) => s.bytesCopied);
}

type Answer = { moving: boolean; job: MoveStatus | null };

function text(a: Answer): string {
  if (a.job === null) return 'no backend move in progress';
  const j = a.job;
  return `move ${j.state}: ${j.from} → ${j.to}; pass ${j.pass}, ${j.checked}/${j.listed} objects checked, ${j.copied} copied (${humanBytes(j.bytesCopied)}), ` +
    `${j.deleted} deleted from the new backend${j.state === 'done' ? '; switched: the vPool lives in the new backend alone (remove moveFrom)' : ''}${j.error ? `\nerror: ${j.error}` : ''}`;
}

export function addMoveCommand(program: Command, run: (fn: () => Promise<void>) => Promise<void>): void {
  program
    .command('backend-move')
    .description('a backend move (mounted with --move-from OLD): wait for the copy and the switch, or --status; docs/scrubbing.md')
    .argument('[mountpoint]', 'a path on the vPool (default: the current directory if on one, else the one vPool mounted here)')
    .option('--status', 'only show where it stands')
    .option('--json', 'the API answer as JSON')
    .action((mountpoint: string | undefined, o: VerbOpts & { status?: boolean }) =>
      run(async () => {
        const mp = mountpoint ?? (await locate('.').then(() => '.', () => onlyVpool()));
        const pool = await onPool(mp, o);
        let a = await pool.api<Answer>('GET', '/v1/backend-move');
        while (!o.status && a.job !== null && a.job.state === 'running') {
          if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text(a).split('\n')[0]}`);
          await sleep(500);
          a = await pool.api<Answer>('GET', '/v1/backend-move');
        }
        if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
        say(o, a, () => text(a));
        if (a.job?.state === 'failed') process.exitCode = 1;
      }),
    );
}
