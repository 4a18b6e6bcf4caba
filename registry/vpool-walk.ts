/**
 * The vDisks of an open vPool with their paths (a walk of its tree), for the owner records, and whether each
 * one's writes not yet in the backend are protected (its DTL mode and state, and whether anything is unshipped:
 * registry/takeover.ts decides from that whether a takeover is automatic).
 */
import { isCode } from '../util/errors.js';
import type { VDiskInfo, VPool } from '../volume/types.js';
import type { Protection } from './keys.js';

export type Listed = { id: string; path: string; dtl: Omit<Protection, 'since'> };

/** A vDisk's protection from its info (unshipped: data in SCOs after the cork, or SCOs/TLogs waiting for upload). */
export function protectionOf(info: VDiskInfo): Omit<Protection, 'since'> {
  const dirty = info.dirtyBytes > 0 || info.uploadBacklog.scos > 0 || info.uploadBacklog.tlogs > 0;
  return { mode: info.dtl.mode, state: info.dtl.state, dirty };
}

export function vdisksOf(vpool: VPool): Listed[] {
  const out: Listed[] = [];
  const walk = (dir: string): void => {
    for (const name of vpool.readdir(dir)) {
      const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const st = vpool.stat(p);
      if (st.kind === 'dir') walk(p);
      else if (st.kind === 'file') {
        let info;
        try {
          info = vpool.vdisk(p).info();
        } catch (err) {
          if (isCode(err, 'BUSY')) continue; // delegated to another router: its record is that router's (./vdisk-delegation.ts)
          throw err;
        }
        out.push({ id: info.id, path: p, dtl: protectionOf(info) });
      }
    }
  };
  walk('/');
  return out;
}
