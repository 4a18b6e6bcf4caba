/**
 * The long-history takeover of `npm run bench:cluster` (issue 15: "a vDisk with a long history is restarted
 * elsewhere in a time that does not grow with its history"): across routers with the registry, with map
 * checkpoints on and off.
 *
 * One run: a vPool of its own (`h<N><on|off>`, its own file:// backend) on the bench's etcd; router A mounts it
 * (owner), router B follows. Both with tiny SCOs and TLogs (8 clusters per SCO, one SCO per TLog, as the tests'
 * configs): a 1 GiB vDisk gets N writes of 32 KiB through A's mount, each one full SCO, so one TLog each — a
 * history of N TLogs —, going round a working set of WORKING_SET (16 MiB, 512 places, each visited once per 512
 * writes): past 512 TLogs the vDisk's state (its map, its 512 live SCOs, the checkpoint's size) stays the same
 * and only the history grows, as in a VM's disk overwritten for months. (With every write at a new place the
 * state would grow with N too: more live SCOs to record, a bigger checkpoint — what `bench:checkpoint` measures.) Checkpoints on: the default `checkpointEveryTlogs` (128), and the run waits
 * until A's background checkpoint is within one period of the last TLog (as it is at any moment of a running
 * router); off: `checkpointEveryTlogs: 0` on both (none is ever written). Once A recorded the vDisk clean in
 * etcd (no DTL here: the takeover is automatic only then), `kill -9` A; B takes the vPool over and rebuilds the
 * vDisk from the backend. Measured from B's log: kill → B serving (the registry lease's expiry is most of it
 * for a short history), B's TAKEOVER decision → serving (opening the vPool: the tree and the rebuild), the
 * rebuild of the vDisk alone, and how many TLogs it replayed (the count, from its `vDisk rebuilt from the
 * backend` entry).
 */
import fs from 'node:fs';
import path from 'node:path';
import { keyNumbers, onlyVDiskDir } from '../../test/helpers/backend-files.js';
import { allClean, Router } from './cluster-router.js';
import { writeTlogs } from '../shared/tlog-history.js';

const SCO_CLUSTERS = 8;
const VDISK_SIZE = 2 ** 30;
/** The part of the vDisk the writes go round (see the header). */
const WORKING_SET = 16 * 2 ** 20;
const DEFAULT_EVERY = 128; // volume/vdisk/checkpointer.ts DEFAULT_CHECKPOINT_EVERY_TLOGS

export interface HistoryRow {
  tlogs: number;
  checkpoints: boolean;
  /** kill -9 of A → B serving (its `took vPool … over` entry). */
  takeoverMs: number;
  /** B's TAKEOVER decision → B serving: opening the vPool. */
  openMs: number;
  /** The vDisk's rebuild from the backend alone (B's log). */
  rebuildMs: number;
  /** Chain items (TLogs) the rebuild replayed, and the chain's length. */
  replayed: number;
  chain: number;
  /** The checkpoint the rebuild loaded (TLog number), or null. */
  checkpointAt: number | null;
}

const ms = (e: Record<string, unknown>): number => Date.parse(String(e.timestamp));

/** One long-history takeover (see the header); the routers are stopped before it returns. */
export async function historyTakeover(root: string, etcd: string, lease: number, tlogs: number, checkpoints: boolean, log: (s: string) => void): Promise<HistoryRow> {
  const vpool = `h${tlogs}${checkpoints ? 'on' : 'off'}`;
  const config = { scoClusters: SCO_CLUSTERS, tlogScos: 1, scoMaxAgeMs: 2000, ...(checkpoints ? {} : { checkpointEveryTlogs: 0 }) };
  const a = new Router(root, `${vpool}a`, etcd, lease, { vpool, config });
  const routers = [a];
  try {
    await a.until(/^ready$/);
    const b = new Router(root, `${vpool}b`, etcd, lease, { vpool, config });
    routers.push(b);
    await b.until(/^ready$/);
    const file = path.join(a.mountpoint, 'disk');
    fs.writeFileSync(file, '');
    fs.truncateSync(file, VDISK_SIZE);
    const t0 = Date.now();
    const fh = await fs.promises.open(file, 'r+');
    // one TLog per write, every place of the working set once per WORKING_SET / 32 KiB writes
    await writeTlogs((buf, offset) => fh.write(buf, 0, buf.length, offset), 0, tlogs, { clusters: SCO_CLUSTERS, places: WORKING_SET / (SCO_CLUSTERS * 4096), spread: true });
    await fh.close();
    log(`${vpool}: ${tlogs} TLogs written through A's mount in ${Date.now() - t0} ms; waiting for A to ship them`);
    await allClean(etcd, a.name);
    const dir = (what: string): string => onlyVDiskDir(a.backendDir, what);
    if (checkpoints) {
      for (;;) {
        const tl = keyNumbers(dir('tlog'));
        const cp = keyNumbers(dir('checkpoint'));
        // (a history shorter than a period has no checkpoint yet: nothing to wait for)
        if ((tl[tl.length - 1] ?? 0) - (cp[cp.length - 1] ?? 0) <= DEFAULT_EVERY) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const inBackend = keyNumbers(dir('tlog')).length;
    log(`${vpool}: ${inBackend} TLogs and checkpoints at ${keyNumbers(dir('checkpoint')).join(', ') || 'none'} in the backend after ${Date.now() - t0} ms; kill -9 A`);
    const killedAt = Date.now();
    await a.stop('SIGKILL');
    const took = await b.until(new RegExp(`^took vPool '${vpool}' over from router`), killedAt, 600_000);
    const decided = await b.until(/^TAKEOVER/, killedAt);
    const rebuilt = await b.until(/^vDisk rebuilt from the backend/, killedAt);
    const key = rebuilt.checkpoint === null ? null : String(rebuilt.checkpoint);
    return {
      tlogs: inBackend, checkpoints,
      takeoverMs: ms(took) - killedAt,
      openMs: ms(took) - ms(decided),
      rebuildMs: Number(rebuilt.ms),
      replayed: Number(rebuilt.replayedItems),
      chain: Number(rebuilt.chainItems),
      checkpointAt: key === null ? null : parseInt(key.slice(key.lastIndexOf('/') + 1), 16),
    };
  } finally {
    for (const r of routers.reverse()) await r.stop();
  }
}

/** The table of the rows, markdown. */
export function historyTable(rows: HistoryRow[], lease: number): string[] {
  return [
    `takeover of a vDisk with a long history after kill -9 of its owner (registry lease ${lease} s, file:// backend, one TLog per 32 KiB write going round a working set of ${WORKING_SET / 2 ** 20} MiB; checkpoints on: every ${DEFAULT_EVERY} TLogs)`,
    '',
    '| TLogs | map checkpoints | kill → serving (ms) | TAKEOVER → serving (ms) | rebuild of the vDisk (ms) | TLogs replayed | checkpoint at TLog |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.tlogs} | ${r.checkpoints ? 'on' : 'off'} | ${r.takeoverMs} | ${r.openMs} | ${r.rebuildMs} | ${r.replayed} of ${r.chain} | ${r.checkpointAt ?? '—'} |`),
  ];
}
