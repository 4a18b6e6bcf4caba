/**
 * The scrubbing verbs of the CLI (docs/scrubbing.md):
 *
 *   scrub [PATH]                  on a mounted vPool: scrub the vDisk PATH, or every vDisk below the directory
 *                                 PATH (default .), each through `setfattr user.vdisk.scrub run`
 *   scrub --apply [PATH]          the owner applies what a remote scrubber left (`user.vdisk.scrub apply`)
 *   scrub --backend URL --scratch DIR [--vdisk ID] [--encryption-key-file F [--old-encryption-key-file O]] [--lease-ms N]
 *                                 the "other host": runs the job against the backend alone (every vDisk of
 *                                 the backend's tree, or one) and leaves results for the owner; deletes nothing.
 *                                 Each vDisk under its scrub lock in the backend: one held by another
 *                                 scrubber is skipped (refused with --vdisk), the holder named
 *   gc [PATH] [--dry-run]         mark and sweep of each vDisk's backend objects (`user.vdisk.gc`): what goes and why;
 *                                 on the vPool's root also the orphan vDisk namespaces (`POST /v1/gc/orphans`)
 *   gc --backend s3://… [--dry-run] [--older-than H]
 *                                 abort the multipart uploads a crash left unfinished (volume/scrub/multipart.ts)
 *
 * On a mount, a progress bar (tools/client/progress.ts: vDisks done, the running one's phase, bytes read, written,
 * freed) goes to stderr when it is a terminal, or with --progress; --json prints one JSON line per vDisk on
 * stdout either way.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { openBackend, readKeyFile } from '../../volume/backend/open-backend.js';
import { treeVDisks } from '../../volume/scrub/tree-vdisks.js';
import { scrubVDisk, type ScrubProgress } from '../../volume/scrub/scrub-job.js';
import { DEFAULT_SCRUB_LEASE_MS, ScrubLock } from '../../volume/scrub/scrub-lock.js';
import type { ScrubStatus } from '../../volume/types.js';
import { SCRUB_POLL_MS, ScrubBar } from '../client/progress.js';
import type { SweepItem } from '../../volume/types.js';
import { getVdiskView, setVdiskXattr } from '../client/xattr-calls.js';
import { onPool } from '../client/api-call.js';
import { ConfigError } from '../daemon/config.js';
import { abortUploads, incompleteUploads } from '../../volume/scrub/multipart.js';

const MiB = 2 ** 20;
const mb = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

/** The vDisk files at or below `p` (a file: itself). */
function vdiskFiles(p: string): string[] {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return [p];
  const out: string[] = [];
  for (const e of fs.readdirSync(p, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(p, e.name);
    if (e.isDirectory()) out.push(...vdiskFiles(full));
    else if (e.isFile()) out.push(full);
  }
  return out;
}

function progressLine(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`);
}

interface ScrubFlags {
  apply?: boolean;
  backend?: string;
  scratch?: string;
  vdisk?: string;
  encryptionKeyFile?: string;
  oldEncryptionKeyFile?: string;
  leaseMs?: string;
  fillRatio?: string;
  json?: boolean;
  progress?: boolean;
}

type ScrubbingView = Pick<ScrubStatus, 'lastReport' | 'garbageBytes' | 'progress' | 'running' | 'lastRun'>;

async function scrubMounted(target: string, o: ScrubFlags): Promise<void> {
  const files = vdiskFiles(target);
  let freed = 0;
  let read = 0;
  let written = 0;
  const bar = new ScrubBar(files.length, o.progress === true);
  try {
    for (const [i, file] of files.entries()) {
      const name = path.relative(target === file ? path.dirname(file) : target, file);
      bar.update({ units: i, current: name, phase: o.apply ? 'applying' : 'starting', bytesRead: read, bytesWritten: written, bytesFreed: freed });
      let st: ScrubbingView;
      if (o.apply) {
        await setVdiskXattr(file, 'user.vdisk.scrub', 'apply', 'scrub --apply');
        st = (await getVdiskView(file, 'user.vdisk.scrubbing', 'scrub')) as ScrubbingView;
      } else {
        // started in the background (a setxattr lasting the whole scrub would hold the file's inode lock, and
        // the guest's writes with it), then polled until it has ended: progress on the way, the outcome at the end
        await setVdiskXattr(file, 'user.vdisk.scrub', 'start', 'scrub');
        for (;;) {
          await new Promise((r) => setTimeout(r, SCRUB_POLL_MS));
          st = (await getVdiskView(file, 'user.vdisk.scrubbing', 'scrub')) as ScrubbingView;
          if (!st.running) break;
          const p = st.progress;
          if (p) bar.update({ units: i + (p.segments > 0 ? p.segmentsDone / p.segments : 0) * 0.99, current: name, phase: p.phase, bytesRead: read + p.bytesRead, bytesWritten: written + p.bytesWritten, bytesFreed: freed });
        }
        const run = st.lastRun;
        if (run === null || run.outcome === 'failed' || run.outcome === 'stale') {
          throw new ConfigError(`scrub ${file}: ${run === null ? 'the daemon kept no outcome' : `${run.outcome}: ${run.error ?? ''}`} (the daemon's log has the cause)`);
        }
      }
      const r = st.lastReport;
      freed += r?.swept.bytes ?? 0;
      read += r?.stats.bytesRead ?? 0;
      written += r?.stats.bytesWritten ?? 0;
      bar.update({ units: i + 1, current: name, phase: r?.outcome ?? 'done', bytesRead: read, bytesWritten: written, bytesFreed: freed });
      reportOne(file, st, o);
    }
  } finally {
    bar.stop();
  }
  if (!o.json) console.log(`${files.length} vDisk(s) ${o.apply ? 'applied' : 'scrubbed'}, ${mb(freed)} freed`);
}

function reportOne(file: string, st: ScrubbingView, o: ScrubFlags): void {
  const r = st.lastReport;
  {
    if (o.json) console.log(JSON.stringify({ file, ...r, garbageBytesLeft: st.garbageBytes }));
    else if (r !== null) {
      console.log(`${file}: ${r.outcome}; read ${mb(r.stats.bytesRead)}, wrote ${mb(r.stats.bytesWritten)}, freed ${mb(r.swept.bytes)} (${r.swept.objects} objects), ` +
        `${r.relocated} clusters moved, ${mb(st.garbageBytes)} garbage left`);
    }
  }
}

async function scrubRemote(o: ScrubFlags): Promise<void> {
  if (o.scratch === undefined) throw new ConfigError('--backend needs --scratch DIR (where live clusters are gathered)');
  if (o.oldEncryptionKeyFile !== undefined && o.encryptionKeyFile === undefined) throw new ConfigError('--old-encryption-key-file: only with --encryption-key-file (the key the rotation moves to)');
  const leaseMs = Number(o.leaseMs ?? DEFAULT_SCRUB_LEASE_MS);
  if (!(leaseMs > 0)) throw new ConfigError(`--lease-ms must be a number of milliseconds > 0, got ${o.leaseMs}`);
  const key = o.encryptionKeyFile === undefined ? undefined : await readKeyFile(o.encryptionKeyFile);
  const oldKeys = o.oldEncryptionKeyFile === undefined ? [] : [await readKeyFile(o.oldEncryptionKeyFile)];
  const backend = await openBackend(o.backend!, { encryptionKey: key, oldKeys, tool: 'vpoolfs scrub --backend' });
  try {
    const ids = o.vdisk !== undefined ? [o.vdisk] : await treeVDisks(backend);
    let skipped = 0;
    for (const [i, id] of ids.entries()) {
      const show = (p: ScrubProgress): void =>
        progressLine(`[${i}/${ids.length} vDisks] ${id}: ${p.phase} ${p.segmentsDone}/${p.segments} segments, read ${mb(p.bytesRead)}, wrote ${mb(p.bytesWritten)}`);
      // one scrub of a vDisk at a time, across hosts (volume/scrub/scrub-lock.ts): a vDisk another scrubber holds
      // is refused when it was named (--vdisk), skipped and said otherwise
      let r;
      try {
        r = await ScrubLock.with(backend, id, { holder: 'vpoolfs scrub --backend', leaseMs }, (lock) =>
          scrubVDisk(backend, id, { scratchDir: o.scratch!, fillRatio: o.fillRatio === undefined ? undefined : Number(o.fillRatio), onProgress: show, checkpoint: () => lock.check() }));
      } catch (err) {
        progressLine('');
        if (o.vdisk !== undefined || (err as { context?: { scrubLock?: boolean } }).context?.scrubLock !== true) throw err;
        skipped++;
        if (o.json) console.log(JSON.stringify({ vdisk: id, skipped: (err as Error).message }));
        else console.log(`${id}: skipped: ${(err as Error).message}`);
        continue;
      }
      progressLine('');
      if (o.json) console.log(JSON.stringify(r));
      else {
        console.log(`${id}: ${r.nothingToDo ? 'nothing to rewrite' : `result ${r.scrubId}`}; read ${mb(r.stats.bytesRead)}, wrote ${mb(r.stats.bytesWritten)}, ` +
          `${mb(r.stats.bytesFreed)} to free once applied (the owner: vpoolfs scrub --apply FILE)`);
      }
    }
    if (skipped > 0 && !o.json) console.log(`${skipped} of ${ids.length} vDisk(s) skipped: another scrubber holds them`);
  } finally {
    await backend.close();
  }
}

/** `gc --backend URL`: the incomplete multipart uploads of an S3 backend, listed and (without dry run) aborted. */
async function gcUploads(url: string, hours: number, dryRun: boolean, json: boolean): Promise<void> {
  if (!(hours >= 0)) throw new ConfigError(`--older-than must be a number of hours ≥ 0, got ${hours}`);
  if (!url.startsWith('s3://')) {
    if (!json) console.log(`${url.replace(/\?.*$/, '')}: not an s3:// backend, it has no multipart uploads`);
    return;
  }
  const uploads = await incompleteUploads(url, hours * 3600_000);
  if (!dryRun) await abortUploads(url, uploads);
  if (json) console.log(JSON.stringify({ backend: url.replace(/\?.*$/, ''), dryRun, uploads }));
  else {
    for (const u of uploads) {
      console.log(`${dryRun ? 'would abort' : 'aborted'} multipart upload of ${u.key}  (id ${u.uploadId}, started ${new Date(u.initiated).toISOString()}: never completed)`);
    }
    console.log(`${uploads.length} incomplete multipart upload(s) ${dryRun ? 'would be aborted' : 'aborted'}`);
  }
}

export function addScrubCommands(program: Command, fail: (err: unknown) => never): void {
  program
    .command('scrub')
    .description('reclaim the backend space of overwritten data, deleted snapshots and rollbacks (docs/scrubbing.md)')
    .argument('[path]', 'a vDisk, or a directory of a mounted vPool (every vDisk below it)', '.')
    .option('--apply', 'apply the results a remote scrubber left, instead of scrubbing here')
    .option('--backend <url>', 'scrub against the backend alone, as another host would (needs --scratch); results are left for the owner')
    .option('--scratch <dir>', 'scratch directory of a --backend scrub')
    .option('--vdisk <id>', 'with --backend: only this vDisk id')
    .option('--encryption-key-file <file>', 'with --backend: the key of an encrypted backend')
    .option('--old-encryption-key-file <file>', 'with --backend, during a key rotation: the old key, objects not yet rewritten are read with it')
    .option('--lease-ms <ms>', `with --backend: the lease of the per-vDisk scrub lock, renewed while the job runs (default ${DEFAULT_SCRUB_LEASE_MS})`)
    .option('--fill-ratio <r>', 'with --backend: rewrite SCOs whose live share is below r (default 0.75)')
    .option('--json', 'one JSON line per vDisk')
    .option('--progress', 'show the progress bar (stderr) even when stderr is not a terminal: one line per update')
    .action(async (target: string, o: ScrubFlags) => {
      try {
        if (o.backend !== undefined) await scrubRemote(o);
        else await scrubMounted(target, o);
      } catch (err) {
        fail(err);
      }
    });
  program
    .command('gc')
    .description("mark and sweep: delete each vDisk's backend objects that nothing references (with --dry-run: list them and why)")
    .argument('[path]', "a vDisk, or a directory of a mounted vPool (its root: also the vDisk namespaces in the backend that nothing references)", '.')
    .option('--dry-run', 'list, delete nothing')
    .option('--json', 'one JSON line per vDisk')
    .option('--backend <url>', 'instead: abort the incomplete multipart uploads of this s3:// backend (a put cut short by a crash)')
    .option('--older-than <hours>', 'with --backend: only uploads started this long ago (default 1; an upload in flight is seconds old)', '1')
    .action(async (target: string, o: { dryRun?: boolean; json?: boolean; backend?: string; olderThan: string }) => {
      try {
        if (o.backend !== undefined) {
          await gcUploads(o.backend, Number(o.olderThan), !!o.dryRun, !!o.json);
          return;
        }
        let n = 0;
        for (const file of vdiskFiles(target)) {
          await setVdiskXattr(file, 'user.vdisk.gc', o.dryRun ? 'dry-run' : 'run', 'gc');
          const st = (await getVdiskView(file, 'user.vdisk.scrubbing', 'gc')) as { lastSweep: { items: SweepItem[] } | null };
          const items = st.lastSweep?.items ?? [];
          n += items.length;
          if (o.json) console.log(JSON.stringify({ file, dryRun: !!o.dryRun, items }));
          else for (const it of items) console.log(`${o.dryRun ? 'would delete' : 'deleted'} ${it.key}  (${file}: ${it.reason})`);
        }
        if (!o.json) console.log(`${n} object(s) ${o.dryRun ? 'would be deleted' : 'deleted'}`);
        // on the vPool's root: also the whole vDisk namespaces nothing references (volume/scrub/orphans.ts), through
        // the owner's API: only it knows what it has created and not yet shipped
        const pool = await onPool(target, { json: o.json });
        if (pool.vpoolPath === '/') {
          const a = await pool.api<{ dryRun: boolean; items: SweepItem[] }>('POST', '/v1/gc/orphans', { dryRun: !!o.dryRun });
          if (o.json) console.log(JSON.stringify({ orphans: true, ...a }));
          else {
            for (const it of a.items) console.log(`${o.dryRun ? 'would delete' : 'deleted'} ${it.key}  (the vPool: ${it.reason})`);
            console.log(`${a.items.length} orphan vDisk namespace(s) ${o.dryRun ? 'would be deleted' : 'deleted'}`);
          }
        }
      } catch (err) {
        fail(err);
      }
    });
}
