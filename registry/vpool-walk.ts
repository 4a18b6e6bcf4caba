/** The vDisks of an open vPool with their paths (a walk of its tree), for the owner records. */
import type { VPool } from '../volume/types.js';

export function vdisksOf(vpool: VPool): Array<{ id: string; path: string }> {
  const out: Array<{ id: string; path: string }> = [];
  const walk = (dir: string): void => {
    for (const name of vpool.readdir(dir)) {
      const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const st = vpool.stat(p);
      if (st.kind === 'dir') walk(p);
      else if (st.kind === 'file') out.push({ id: vpool.vdisk(p).id, path: p });
    }
  };
  walk('/');
  return out;
}
