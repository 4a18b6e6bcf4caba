/**
 * The owner's side of a planned move of the whole vPool (docs/cluster.md, "Moves"): while this router owns the
 * vPool, a watch reads `/vpoolfs/vpools/<vpool>/move` (registry/move.ts) every quarter second and runs the
 * handover asked of it, one at a time (`vpoolfs move --vpool NAME --to ROUTER`).
 *
 * The automatic move at the end of a live migration no longer moves the whole vPool: it is decided per vDisk
 * (tools/daemon/vdisk-automove.ts), with the same configuration (`AutoMove` below: autoMove, autoMoveAfterMs,
 * autoMoveHoldMs). A vPool shared by VMs on several routers then follows each VM's vDisks, and the tree stays
 * with the vPool's owner.
 *
 * The steps of the handover itself are the mount's (tools/commands/mount-owner.ts, `handOver`): they touch the
 * mount, the vPool and the router link.
 */
import { logger } from '../../util/log.js';
import { readMove, type MoveRequest } from '../../registry/move.js';
import type { RouterSession } from '../../registry/router-session.js';

const log = logger('move');

export const HANDOVER_POLL_MS = 250;

/** The automatic move per vDisk's settings (config autoMove, autoMoveAfterMs, autoMoveHoldMs). */
export interface AutoMove {
  enabled: boolean;
  /** How long the router serving a vDisk must hold no handle of it (ms). */
  afterMs: number;
  /** No automatic move of a vDisk within this long of its last change of router (ms): the ping-pong guard. */
  holdMs: number;
}

export interface HandoverWatchOptions {
  session: RouterSession;
  vpool: string;
  router: string;
  /** Runs the handover asked by `req` (the mount's steps); resolves when it is over, either way. */
  handOver: (req: MoveRequest) => Promise<void>;
}

export class HandoverWatch {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private said = '';

  constructor(private readonly opts: HandoverWatchOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), HANDOVER_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private say(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.said === key) return;
    this.said = key;
    log.info(msg, { vpool: this.opts.vpool, ...fields });
  }

  private async tick(): Promise<void> {
    if (this.busy || this.timer === null) return;
    this.busy = true;
    try {
      const { session, vpool, router } = this.opts;
      const client = session.registry.client;
      const req = await readMove(client, vpool);
      if (this.timer === null) return;
      if (req !== null && req.from === router && req.tag === session.tag) {
        this.stop();
        await this.opts.handOver(req);
        return;
      }
    } catch (err) {
      this.say(`etcd ${(err as Error).message}`, 'reading the registry for moves failed (etcd unreachable?): tried again', { error: String((err as Error).message ?? err) });
    } finally {
      this.busy = false;
    }
  }
}
