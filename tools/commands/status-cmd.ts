/**
 * `vpoolfs status [MOUNTPOINT] [--wait[=SECONDS]] [--pid] [--json]`: the vPool at a glance from its
 * management API (api/routes-status.ts). `--wait` retries until the daemon answers (a mount starting, or
 * restarting after a crash: the stale mount answers ENOTCONN until then); `--pid` prints only the daemon's
 * pid (for `kill`, instead of a pgrep that also matches npm's wrapper).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { ApiClientError, call } from '../../api/client.js';
import { onPool, say, type VerbOpts } from '../client/api-call.js';
import { humanBytes, isoTime } from '../client/human.js';
import { locate, LocateError, onlyVpool } from '../client/locate.js';

type Status = Record<string, any>;

function statusText(s: Status): string {
  const b = s.backend;
  const wc = s.writeCache;
  const rc = s.readCache;
  const u = s.usage;
  const pct = (a: number, l: number) => (l > 0 ? ` (${Math.round((100 * a) / l)}%)` : '');
  const dtlStates = Object.entries(s.dtl.states as Record<string, number>).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ');
  const lines: Array<[string, string]> = [
    ['vPool', `${s.vpool} at ${s.mountpoint}`],
    ['router', s.router],
    ['daemon', `pid ${s.pid}, vpoolfs ${s.version}, ${s.engine} engine, up since ${isoTime(s.startedAt)}`],
    ['api', `${s.api.socket}${s.api.tcp ? `, tcp ${s.api.tcp}` : ''}`],
    ['backend', `${b.url}: ${b.reachable ? `reachable (${b.probeMs} ms)` : `NOT reachable: ${b.error}`}`],
    ['vDisks', `${u.vdisks} in ${u.dirs} directories: ${humanBytes(u.provisionedBytes)} provisioned, ${humanBytes(u.allocatedBytes)} written`],
    ['write cache', `${humanBytes(wc.bytes)} of ${humanBytes(wc.limitBytes)}${pct(wc.bytes, wc.limitBytes)}${wc.waitingWrites > 0 ? `, ${wc.waitingWrites} writes waiting` : ''}${wc.stateDiskFull ? ', STATE DISK FULL' : ''}`],
    ['read cache', `${humanBytes(rc.bytes)} of ${humanBytes(rc.limitBytes)}${pct(rc.bytes, rc.limitBytes)}, ${rc.hits} hits, ${rc.misses} misses`],
    ['upload backlog', `${humanBytes(s.uploadBacklog.dirtyBytes)} not yet in the backend (${s.uploadBacklog.scos} SCOs, ${s.uploadBacklog.tlogs} TLogs${s.uploadBacklog.lagSeconds > 0 ? `, the oldest for ${s.uploadBacklog.lagSeconds} s` : ''})${s.uploadBacklog.dtlQueuedBytes > 0 ? `; ${humanBytes(s.uploadBacklog.dtlQueuedBytes)} not yet on the DTL` : ''}`],
    ['dtl', `${s.dtl.modes.none} none, ${s.dtl.modes.async} async, ${s.dtl.modes.sync} sync${dtlStates ? `; ${dtlStates}` : ''}`],
    ['open handles', String(s.openHandles)],
    ['faults', (s.faults as Array<{ path: string; code: string; message: string }>).map((f) => `${f.path}: ${f.code} ${f.message}`).join('; ') || '-'],
  ];
  return lines.map(([k, v]) => `${(k + ':').padEnd(16)}${v}`).join('\n');
}

async function statusOnce(mp: string, o: VerbOpts): Promise<Status> {
  const pool = await onPool(mp, o);
  return call<Status>(pool.target, 'GET', '/v1/status');
}

export function addStatusCommand(program: Command, run: (fn: () => Promise<void>) => Promise<void>): void {
  program
    .command('status')
    .description('the vPool at a glance: daemon, backend reachability, write and read cache, upload backlog, DTL')
    .argument('[mountpoint]', 'a path on the vPool (default: the current directory if on one, else the one vPool mounted here)')
    .option('--wait [seconds]', 'wait until the daemon answers (default 60 s): after starting or restarting a mount')
    .option('--pid', "print only the daemon's pid")
    .option('--json', 'the API answer as JSON')
    .action((mountpoint: string | undefined, o: VerbOpts & { wait?: boolean | string; pid?: boolean }) =>
      run(async () => {
        // no path: the current directory if it is on a vPool, else the one vPool mounted here
        const mp = mountpoint ?? (await locate('.').then(() => '.', () => onlyVpool()));
        const waitS = o.wait === undefined ? 0 : o.wait === true ? 60 : Number(o.wait);
        if (!Number.isFinite(waitS) || waitS < 0) throw new LocateError(`--wait ${String(o.wait)}: expected seconds`);
        const deadline = Date.now() + waitS * 1000;
        let s: Status;
        for (;;) {
          try {
            s = await statusOnce(mp, o);
            break;
          } catch (err) {
            const retry = err instanceof LocateError || (err instanceof ApiClientError && err.body.code === 'UNREACHABLE');
            if (!retry || Date.now() >= deadline) throw err;
            await sleep(200);
          }
        }
        if (o.pid) console.log(String(s.pid));
        else say(o, s, () => statusText(s));
      }),
    );
}
