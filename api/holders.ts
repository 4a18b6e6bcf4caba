/**
 * Which processes hold a file open: every /proc/<pid>/fd entry whose link names it (the kernel's own path
 * of the open file; reading the link does not go through the FUSE mount, so the daemon may do it). Used to
 * say *who* keeps a vDisk busy when a rollback or a delete is refused ("pid 4242 (qemu-system-x86)").
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

export interface Holder {
  pid: number;
  command: string;
}

export async function holdersOf(file: string, limit = 8): Promise<Holder[]> {
  const out: Holder[] = [];
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return out;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (target !== file) continue;
      const command = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
      out.push({ pid: Number(pid), command });
      break;
    }
    if (out.length >= limit) break;
  }
  return out;
}

/** `pid 4242 (qemu-system-x86), pid 77 (dd)`. */
export function holdersText(holders: Holder[]): string {
  return holders.map((h) => `pid ${h.pid} (${h.command})`).join(', ');
}
