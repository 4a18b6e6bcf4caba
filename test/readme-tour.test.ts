/**
 * The README's tour, run as written: the ```sh block of its "A five-minute tour" section is extracted from
 * README.md (not a copy) and run by bash with `set -e` from the checkout, in a private mount namespace whose
 * /mnt, /var/lib/vpoolfs and /tmp are fresh tmpfs, so that /mnt/vpool, the default state directory and the
 * tour's /tmp files are its own and vanish with it. The lines that print a promise ("rolled back", "every
 * byte is back" …) must print it; the refused `rm` must say why.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DETACH_HOST_MOUNTS, fuseTest } from './helpers/mount.js';

const test = fuseTest();
const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

/** The ```sh blocks of the README section `heading`, in order. */
export function readmeBlocks(heading: string): string[] {
  const text = readFileSync(`${ROOT}/README.md`, 'utf8');
  const start = text.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README.md has no section "## ${heading}"`);
  const end = text.indexOf('\n## ', start + 4);
  const section = text.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

test('the README tour runs as written and keeps its promises', async (t) => {
  const blocks = readmeBlocks('A five-minute tour');
  t.is(blocks.length, 1, 'one block to run');
  // on a failing line: the daemon's log too (the tour sends it to /tmp/vpoolfs.log)
  const script = `set -eE\ntrap 'echo "--- tail of /tmp/vpoolfs.log" >&2; tail -n 40 /tmp/vpoolfs.log >&2' ERR\n${blocks[0]}`;
  // the checkout may itself lie under /tmp (a CI clone): it is bound aside before /tmp is covered, then
  // bound back at its own path, so that every absolute path into it (the CLI, node_modules) still works
  const aside = '/run/vpoolfs-readme-tour-checkout';
  const setup = [
    'set -e',
    'mount --make-rprivate /',
    `mkdir -p ${aside}`,
    `mount --bind ${JSON.stringify(ROOT)} ${aside}`,
    DETACH_HOST_MOUNTS,
    'mount -t tmpfs tmpfs /mnt',
    'mount -t tmpfs tmpfs /var/lib/vpoolfs',
    'mount -t tmpfs tmpfs /tmp',
    `mkdir -p ${JSON.stringify(ROOT)}`,
    `mount --bind ${aside} ${JSON.stringify(ROOT)}`,
    `cd ${JSON.stringify(ROOT)}`,
    'exec bash -c "$TOUR"',
  ].join('\n');
  // /var/lib/vpoolfs must exist to be mounted over (inside the namespace it is a fresh tmpfs)
  const child = spawn('bash', ['-c', 'mkdir -p /var/lib/vpoolfs && exec unshare -m bash -c "$SETUP"'], {
    env: { ...process.env, TOUR: script, SETUP: setup },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  t.teardown(() => {
    // whatever the tour left running dies with its process group (and the namespace with its last process)
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.is(code, 0, `the tour failed (exit ${code}):\n--- stdout\n${out}\n--- stderr\n${err}`);
  for (const promise of ["the clone has the snapshot's data", 'rolled back', 'every byte is back', 'rebuilt from the backend']) {
    t.true(out.includes(promise), `the tour printed "${promise}":\n${out}\n${err}`);
  }
  t.regex(err, /vpoolfs: delete disk1: .*has clones.* \(EBUSY\)/, 'the refused rm says why');
  t.regex(out, /^vPool: +vpool at \/mnt\/vpool$/m, 'status answered');
  t.regex(out, /\b20G\b.*root\.img/, 'the vDisk is still 20G after qemu-img convert -n');
  // the scrub freed space: its own report, the backend directory's size, and user.vdisk.info's lastRun
  const freed = /disk2: applied; .*freed ([\d.]+) MiB/.exec(out);
  t.truthy(freed, `the scrub reported what it freed:\n${out}`);
  t.true(Number(freed?.[1]) >= 16, `the scrub freed at least half of the 32 MiB the deleted snapshot alone held (${freed?.[1]} MiB)`);
  const du = /^backend: (\d+) MiB before the scrub, (\d+) MiB after$/m.exec(out);
  t.truthy(du, `the tour printed the backend's size before and after the scrub:\n${out}`);
  t.true(Number(du?.[1]) - Number(du?.[2]) >= 16, `the backend shrank by at least 16 MiB (${du?.[1]} → ${du?.[2]} MiB)`);
  t.regex(out, /"lastRun":\{"at":\d+,"ms":\d+,"outcome":"applied","freedBytes":[1-9]\d*\}/, 'user.vdisk.info says when the last scrub ran and what it freed');
});
