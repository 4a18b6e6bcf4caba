/**
 * A process holding a file open until killed, as a VM's disk is held: read-write, a VM's open disk without I/O
 * (QEMU opens it so); read-only, a backup. The automatic move per vDisk counts the read-write ones.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { q } from './mount.js';

export async function holdOpen(file: string, mode: 'rw' | 'ro'): Promise<ChildProcess> {
  const p = spawn('bash', ['-c', `exec 3${mode === 'rw' ? '<>' : '<'}${q(file)}; echo open; exec sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    p.stdout.once('data', () => resolve());
    p.once('exit', (code) => reject(new Error(`holding ${file} open failed (${code})`)));
  });
  return p;
}

/** Kills a holder and waits for its end (the file's release then reached the mount). */
export async function letGo(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const ended = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGKILL');
  await ended;
}
