/**
 * Builds the C reference of the mount benchmark, bench/mount/c/passthrough_ll.c (a multi-threaded libfuse3
 * low-level passthrough), into dist/bench/mount/c/passthrough_ll, and installs what that needs when it is missing:
 * Debian's `libfuse3-dev` (headers and libfuse3.so) and `gcc`.
 *
 * Bench-only, and careful with the machine: it never installs Debian's `fuse3` (which would remove `fuse`,
 * whose fusermount fuse-native needs; the C passthrough mounts with mount(2) as root and needs no
 * fusermount3), and it refuses any install that apt-get's simulation says would remove a package.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This file's folder in dist/ (dist/bench/mount/); the source is beside this file's source in the repository. */
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
const source = path.join(repoRoot, 'bench', 'mount', 'c', 'passthrough_ll.c');
export const C_PASSTHROUGH_BINARY = path.join(here, 'c', 'passthrough_ll');

const HEADER = '/usr/include/fuse3/fuse_lowlevel.h';

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** libfuse3.so for the linker (libfuse3-dev ships it; libfuse3-3 alone has only the versioned name). */
function haveLib(): boolean {
  const dirs = ['/usr/lib', '/lib', ...fs.readdirSync('/usr/lib').filter((d) => d.endsWith('-linux-gnu')).map((d) => `/usr/lib/${d}`)];
  return dirs.some((d) => fs.existsSync(path.join(d, 'libfuse3.so')));
}

function aptGet(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('apt-get', args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** Installs Debian packages after a simulation shows they remove nothing. Throws with the reason otherwise. */
function aptInstall(pkgs: string[]): void {
  const install = ['install', '-y', '-qq', '--no-install-recommends', ...pkgs];
  let sim = aptGet(['-s', ...install]);
  if (!sim.ok) {
    process.stderr.write('bench: apt-get cannot resolve the packages yet, running apt-get update once\n');
    aptGet(['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq']);
    sim = aptGet(['-s', ...install]);
  }
  if (!sim.ok) throw new Error(`apt-get -s install ${pkgs.join(' ')} failed:\n${sim.out.trim().slice(-600)}`);
  const removed = sim.out.split('\n').filter((l) => l.startsWith('Remv '));
  if (removed.length > 0) {
    throw new Error(`installing ${pkgs.join(' ')} would remove packages, not doing it:\n${removed.join('\n')}`);
  }
  process.stderr.write(`bench: installing ${pkgs.join(' ')} (apt-get; the simulation removes nothing)\n`);
  const r = aptGet(['-o', 'DPkg::Lock::Timeout=600', ...install]);
  if (!r.ok) throw new Error(`apt-get install ${pkgs.join(' ')} failed:\n${r.out.trim().slice(-600)}`);
}

/**
 * The path of a built passthrough_ll, up to date with its source: installs libfuse3-dev and gcc if
 * missing, compiles if the binary is missing or older than the source. Throws with the reason if it can't.
 */
export function ensureCPassthrough(): string {
  if (!fs.existsSync(source)) throw new Error(`${source} is missing`);
  const missing = [
    ...(fs.existsSync(HEADER) && haveLib() ? [] : ['libfuse3-dev']),
    ...(have('gcc') ? [] : ['gcc']),
  ];
  if (missing.length > 0) aptInstall(missing);
  const fresh = fs.existsSync(C_PASSTHROUGH_BINARY)
    && fs.statSync(C_PASSTHROUGH_BINARY).mtimeMs >= fs.statSync(source).mtimeMs;
  if (fresh) return C_PASSTHROUGH_BINARY;
  fs.mkdirSync(path.dirname(C_PASSTHROUGH_BINARY), { recursive: true });
  const tmp = `${C_PASSTHROUGH_BINARY}.${process.pid}.tmp`;
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', tmp, source, '-I/usr/include/fuse3', '-lfuse3', '-lpthread'],
    { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`gcc failed to build ${source}:\n${`${r.stdout ?? ''}${r.stderr ?? ''}${r.error ?? ''}`.trim().slice(-1200)}`);
  }
  fs.renameSync(tmp, C_PASSTHROUGH_BINARY);
  process.stderr.write(`bench: built ${C_PASSTHROUGH_BINARY}\n`);
  return C_PASSTHROUGH_BINARY;
}
