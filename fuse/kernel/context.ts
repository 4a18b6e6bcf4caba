/**
 * What an opcode handler of the kernel engine works with: the engine-agnostic handlers (fuse/handlers.ts),
 * the node and directory-handle tables, and the way back to the kernel (reply, notify). Kept apart from
 * session.ts so that the opcode files depend on this interface, not on the session.
 */
import type { Handlers } from '../handlers.js';
import type { InHeader } from './decode.js';
import type { DirHandles } from './dirs.js';
import type { Nodes } from './nodes.js';

export interface KernelCtx {
  readonly ops: Handlers;
  readonly nodes: Nodes;
  readonly dirs: DirHandles;
  readonly counters: Int32Array;
  /** Cache timeouts handed to the kernel (seconds). */
  readonly entryValidS: number;
  readonly attrValidS: number;
  /** Writes a reply to /dev/fuse; a reply to a request the kernel dropped (interrupted) is ignored. */
  send(reply: Buffer): void;
  /** A reply in pieces (a header, then data that is not copied), written as one message with writev. */
  sendv(parts: Buffer[]): void;
  /**
   * The handler has answered and nothing holds `request` (a view of a request's bytes) any more: its
   * buffer goes back to the reader thread that read it, for the next big request (no allocation per write).
   */
  recycle(request: Uint8Array): void;
  /**
   * File handle `fh` was just opened (OPEN, CREATE; called before the reply): the reader threads learn which
   * vDisk it reads, so that they can answer its READs themselves (fast-read.ts).
   */
  opened(fh: number): void;
  /** File handle `fh` is being released (RELEASE): the readers forget it (the number may be reused). */
  released(fh: number): void;
  /**
   * A WRITE's call into the volume, run with the WRITEs that come right after it (held while more requests
   * wait for the main thread; at the latest at the end of the event-loop turn or before the next request
   * that is not a WRITE): the volume takes them together (volume/vdisk/write-gather.ts). `request` is a view of
   * the request's bytes: if `run` throws, the session answers EIO and lets go of its buffer.
   */
  deferWrite(h: InHeader, request: Uint8Array, run: () => void): void;
  /** An error reply (`errno` negative). */
  fail(h: InHeader, errno: number): void;
  /** FUSE_NOTIFY_INVAL_INODE: the kernel drops the node's cached pages and attributes. */
  invalidate(nodeid: number): void;
  /** INIT was answered: the mount is usable. */
  initDone(summary: Record<string, unknown>): void;
  /** Debug log of requests, when the mount was started with debug. */
  readonly debug: boolean;
}

/** An opcode handler: the request header and its decoded body. */
export type OpHandler<T> = (ctx: KernelCtx, h: InHeader, req: T) => void;
