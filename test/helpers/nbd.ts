/**
 * NBD for the tests: a real daemon (`vpoolfs mount … --nbd unix:<root>/nbd.sock`, a child process via
 * test/helpers/mount.ts) and the real clients against it: URIs for qemu-img/qemu-io/nbdinfo/nbdcopy/fio,
 * and nbdsh scripts (libnbd's Python binding, Debian python3-libnbd via libnbd-bin) run with the system
 * python3, where that binding lives.
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshLayout, ok, q, sh, startMount, type MountHandle, type ShResult } from './mount.js';

/** The Python that has libnbd's `nbd` module (Debian's; a python3 earlier on PATH may not have it). */
export const NBD_PYTHON = '/usr/bin/python3';

/** The Python scripts of the NBD tests (sources; not compiled into dist/). */
export const PY_DIR = fileURLToPath(new URL('../../../test/helpers/py', import.meta.url));

/** Runs test/helpers/py/SCRIPT with the libnbd Python; never throws (look at `code`). */
export function nbdScript(script: string, args: (string | number)[], timeoutMs = 240_000): Promise<ShResult> {
  return sh(`${NBD_PYTHON} ${q(path.join(PY_DIR, script))} ${args.map((a) => q(String(a))).join(' ')}`, { timeoutMs });
}

export interface NbdMount {
  m: MountHandle;
  sock: string;
  layout: Awaited<ReturnType<typeof freshLayout>>;
  /** The NBD URI of the vDisk at vPool path `name` (without the leading /). */
  uri(name: string): string;
  /** The same mount again (after a kill -9 or a stop), same state and backend. */
  restart(): Promise<MountHandle>;
}

/** A fresh vPool mounted with an NBD unix socket. */
export async function startNbdMount(t: ExecutionContext, extraArgs: string[] = []): Promise<NbdMount> {
  const layout = await freshLayout(t);
  const sock = path.join(layout.root, 'nbd.sock');
  const opts = { mountpoint: layout.mountpoint, state: layout.state, backend: layout.backend, extraArgs: ['--nbd', `unix:${sock}`, ...extraArgs] };
  const nm: NbdMount = {
    m: await startMount(t, opts),
    sock,
    layout,
    uri: (name) => `nbd+unix:///${name}?socket=${sock}`,
    restart: async () => (nm.m = await startMount(t, opts)),
  };
  return nm;
}

/** Runs a Python script with libnbd's binding (`import nbd` is done); never throws (look at `code`). */
export function nbdPython(script: string, args: string[] = [], timeoutMs = 120_000): Promise<ShResult> {
  return sh(`${NBD_PYTHON} -c ${q(`import nbd, sys, os\n${script}`)} ${args.map(q).join(' ')}`, { timeoutMs });
}

/** Same, failing the test unless it exits 0; returns stdout. */
export async function nbdPythonOk(t: ExecutionContext, script: string, args: string[] = [], timeoutMs?: number): Promise<string> {
  const r = await nbdPython(script, args, timeoutMs);
  if (r.code !== 0) t.fail(`python (libnbd) failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export { ok, q, sh };
