/**
 * One daemon per state directory: `<state>/vpoolfs.pid` is created exclusively and holds the daemon's
 * pid. A pid file left by a crashed daemon (its pid no longer runs, or runs another program) is taken
 * over; a live daemon is refused. openVPool does not lock the state directory itself (yet).
 */
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { unlinkSync } from 'node:fs';
import { ConfigError } from './config.js';

/** Whether `pid` runs and looks like a vpoolfs daemon (a recycled pid of another program does not count). */
async function daemonAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return cmdline === undefined || /vpoolfs|cli\.js/.test(cmdline);
}

export interface StateLock {
  release(): void;
}

export async function lockState(stateDir: string): Promise<StateLock> {
  await mkdir(stateDir, { recursive: true });
  const file = path.join(stateDir, 'vpoolfs.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return { release: () => { try { unlinkSync(file); } catch { /* gone already */ } } };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`${stateDir}: cannot create ${file} (${(err as Error).message})`);
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && (await daemonAlive(pid))) {
      throw new ConfigError(`${stateDir}: in use by another vpoolfs daemon (pid ${pid}); one state directory serves one mount`);
    }
    // left by a daemon that is gone; if it cannot be removed, say why (a read-only or failing state disk)
    const gone = await unlink(file).then(() => null, (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? null : e));
    if (gone !== null) throw new ConfigError(`${stateDir}: cannot remove the stale lock ${file} (${gone.message})`);
  }
  throw new ConfigError(`${stateDir}: cannot take the lock ${file}: it came back after it was removed (another daemon starting on the same state directory?)`);
}
