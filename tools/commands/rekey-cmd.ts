/**
 * Key rotation in the daemon and on the command line (docs/encryption.md, "Key rotation"):
 *
 *   vpoolfs rekey [MOUNTPOINT]            start the rekey job (or join the run in progress) and wait for it,
 *                                         progress on stderr (objects checked / listed, rewritten, bytes); exit 1
 *                                         if it failed. Once done, the old key is no longer needed.
 *   vpoolfs rekey --status [MOUNTPOINT]   where it stands, without starting anything
 *   vpoolfs rekey --no-wait               start it and return
 *
 * Both speak to the management API (`GET`/`POST /v1/rekey`, api/routes-rekey.ts). The daemon's side is here
 * too: rekeyFor() makes the job of an encrypted backend (mount-cmd.ts starts it at mount while a rotation is
 * unfinished), registerRekeyMetrics() its Prometheus gauges.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { Gauge, type Registry } from 'prom-client';
import { EncryptedBlobStore } from '../../volume/backend/encrypted-store.js';
import type { BlobStore } from '../../volume/backend/types.js';
import { RekeyJob, type RekeyStatus } from '../../volume/policy/rekey-job.js';
import type { VPool } from '../../volume/types.js';
import { onPool, say, type VerbOpts } from '../client/api-call.js';
import type { ResolvedMount } from '../daemon/config.js';
import { humanBytes } from '../client/human.js';
import { locate, onlyVpool } from '../client/locate.js';

/** The rekey job of the backend the daemon opened: undefined for a plain backend. */
export function rekeyFor(opened: BlobStore, vpool: VPool, cfg: ResolvedMount): RekeyJob | undefined {
  if (!(opened instanceof EncryptedBlobStore)) return undefined;
  return new RekeyJob({
    store: opened,
    gate: (what) => vpool.backendGate?.(what) ?? Promise.resolve(),
    localDir: cfg.state,
    objectsPerSecond: cfg.rekeyObjectsPerSecond,
  });
}

export function registerRekeyMetrics(registry: Registry, job: RekeyJob): void {
  const g = (name: string, help: string, value: (s: RekeyStatus) => number): Gauge =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(value(job.status())); } });
  g('vpoolfs_rekey_running', 'The rekey job (key rotation) is running', (s) => (s.state === 'running' ? 1 : 0));
  g('vpoolfs_rekey_retiring_keys', 'Old key ids objects may still be encrypted with (0: no rotation unfinished)', (s) => s.retiring.length);
  g('vpoolfs_rekey_objects_checked', "Objects of the rekey job's current pass checked so far", (s) => s.checked);
  g('vpoolfs_rekey_objects_listed', "Objects in the rekey job's current pass", (s) => s.listed);
  g('vpoolfs_rekey_objects_rewritten', 'Objects re-encrypted under the new key since the job started', (s) => s.rewritten);
  g('vpoolfs_rekey_bytes_rewritten', 'Plaintext bytes re-encrypted since the job started', (s) => s.bytesRewritten);
  g('vpoolfs_rekey_failures', 'Objects the last pass could not rewrite', (s) => s.failures.length);
}

type Answer = { encrypted: boolean; job: RekeyStatus | null };

function text(a: Answer): string {
  if (!a.encrypted || a.job === null) return 'the backend is not encrypted: nothing to rekey';
  const j = a.job;
  const retiring = j.retiring.length === 0 ? 'no old key is needed any more' : `old key id(s) ${j.retiring.join(', ')} still needed`;
  return `rekey ${j.state}: key id ${j.keyId}; pass ${j.pass}, ${j.checked}/${j.listed} objects checked, ${j.rewritten} rewritten ` +
    `(${humanBytes(j.bytesRewritten)}), ${j.gone} deleted meanwhile; ${retiring}` +
    (j.error ? `\nerror: ${j.error}` : '') + j.failures.slice(0, 10).map((f) => `\n  ${f.key}: ${f.error}`).join('');
}

export function addRekeyCommand(program: Command, run: (fn: () => Promise<void>) => Promise<void>): void {
  program
    .command('rekey')
    .description('key rotation: re-encrypt every backend object under the current key (mounted with --old-encryption-key-file); docs/encryption.md')
    .argument('[mountpoint]', 'a path on the vPool (default: the current directory if on one, else the one vPool mounted here)')
    .option('--status', 'only show where the rekey job stands')
    .option('--no-wait', 'start it and return at once')
    .option('--json', 'the API answer as JSON')
    .action((mountpoint: string | undefined, o: VerbOpts & { status?: boolean; wait: boolean }) =>
      run(async () => {
        const mp = mountpoint ?? (await locate('.').then(() => '.', () => onlyVpool()));
        const pool = await onPool(mp, o);
        if (o.status) {
          const a = await pool.api<Answer>('GET', '/v1/rekey');
          say(o, a, () => text(a));
          return;
        }
        let a = await pool.api<Answer>('POST', '/v1/rekey');
        while (o.wait && a.job !== null && a.job.state === 'running') {
          if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text(a).split('\n')[0]}`);
          await sleep(500);
          a = await pool.api<Answer>('GET', '/v1/rekey');
        }
        if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
        say(o, a, () => text(a));
        if (a.job?.state === 'failed') process.exitCode = 1;
      }),
    );
}
