/**
 * The NBD handshake, fixed newstyle only: greeting, client flags, then options until NBD_OPT_GO (or the
 * old NBD_OPT_EXPORT_NAME) opens an export, or the client aborts. Options: GO, INFO, LIST, ABORT,
 * STARTTLS, STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation); anything else is
 * answered NBD_REP_ERR_UNSUP and negotiation goes on. Every refusal carries a message the client can show.
 * A broken option stream (bad magic, an option longer than MAX_OPTION_LENGTH, unknown client flags) is a
 * ProtocolError: the connection closes.
 */
import type { FdTable } from '../fuse/fds.js';
import type { VPool } from '../volume/types.js';
import { ExportError, VDiskExport, listExports } from './export.js';
import {
  BASE_ALLOCATION, BASE_ALLOCATION_ID, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, MAX_OPTION_LENGTH, MAX_PAYLOAD, OPT, REP, TFLAG,
} from './protocol.js';
import {
  decodeOptionHeader, exportNameReply, greeting, infoBlockSize, infoExport, optionError, optionReply, repMetaContext, repServer,
} from './wire.js';

/** A client broke the protocol: the connection is closed after this is logged. */
export class ProtocolError extends Error {}

/** How a connection reads and writes during the handshake (nbd/connection.ts). */
export interface HandshakeIo {
  /** Exactly `n` bytes; rejects when the connection ends first. */
  read(n: number): Promise<Buffer>;
  write(b: Buffer): void;
  /** Upgrades the connection to TLS (after the ACK of NBD_OPT_STARTTLS has been written). */
  startTls(): Promise<void>;
}

export interface HandshakeContext {
  vpool: VPool;
  /** The mount's open-file table: an open export counts as an open file there (rollback answers EBUSY). */
  fds?: FdTable;
  /** `none`: no TLS on this listener; `require`: nothing but STARTTLS and ABORT before TLS is up. */
  tls: 'none' | 'require';
}

export interface Negotiated {
  export: VDiskExport;
  structured: boolean;
  /** base:allocation was selected for this export (BLOCK_STATUS allowed). */
  baseAllocation: boolean;
  flags: number;
}

/** The transmission flags of an export. */
export function transmissionFlags(e: VDiskExport): number {
  let f = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_WRITE_ZEROES;
  if (e.readOnly) f |= TFLAG.READ_ONLY;
  if (e.canTrim) f |= TFLAG.SEND_TRIM;
  if (e.multiConn) f |= TFLAG.CAN_MULTI_CONN;
  return f;
}

/** Block sizes: any byte range works (the vDisk does the read-modify-write), 4 KiB preferred, 32 MiB at most. */
const BLOCK_MIN = 1;
const BLOCK_PREFERRED = 4096;

/** A cursor over an option's data that fails (NBD_REP_ERR_INVALID) instead of reading past its end. */
class OptionData {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  str(n: number): string {
    this.need(n);
    const s = this.b.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  end(): void {
    if (this.at !== this.b.length) throw new Invalid(`${this.b.length - this.at} bytes too many in the option data`);
  }
  private need(n: number): void {
    if (this.at + n > this.b.length) throw new Invalid('option data too short');
  }
}

/** An option's data does not parse: NBD_REP_ERR_INVALID, and negotiation goes on. */
class Invalid extends Error {}

/**
 * Runs the handshake; resolves with the export once the client is in transmission, or undefined when it
 * sent NBD_OPT_ABORT. Rejects on a ProtocolError and when the connection ends.
 */
export async function negotiate(io: HandshakeIo, ctx: HandshakeContext): Promise<Negotiated | undefined> {
  io.write(greeting());
  const clientFlags = (await io.read(4)).readUInt32BE(0);
  if (!(clientFlags & FLAG_C_FIXED_NEWSTYLE)) throw new ProtocolError('the client does not speak fixed newstyle negotiation (the only one served)');
  if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`);
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
  let tlsUp = false;
  let structured = false;
  /** The meta contexts selected by SET_META_CONTEXT, and for which export. */
  let meta: { name: string; base: boolean } | undefined;

  for (;;) {
    const h = decodeOptionHeader(await io.read(16));
    if (!h.magicOk) throw new ProtocolError('bad option magic (expected IHAVEOPT)');
    if (h.length > MAX_OPTION_LENGTH) {
      if (h.option !== OPT.EXPORT_NAME) io.write(optionError(h.option, REP.ERR_TOO_BIG, `option data of ${h.length} bytes is more than the ${MAX_OPTION_LENGTH} accepted`));
      throw new ProtocolError(`option ${h.option} with ${h.length} bytes of data (at most ${MAX_OPTION_LENGTH})`);
    }
    const raw = await io.read(h.length);
    const opt = h.option;
    const d = new OptionData(raw);
    const reply = (type: number, data?: Buffer) => io.write(optionReply(opt, type, data));
    const fail = (type: number, message: string) => io.write(optionError(opt, type, message));

    if (ctx.tls === 'require' && !tlsUp && opt !== OPT.STARTTLS && opt !== OPT.ABORT) {
      if (opt === OPT.EXPORT_NAME) throw new ProtocolError('NBD_OPT_EXPORT_NAME before TLS on a listener that requires TLS');
      fail(REP.ERR_TLS_REQD, 'this listener requires TLS: send NBD_OPT_STARTTLS first');
      continue;
    }
    try {
      switch (opt) {
        case OPT.EXPORT_NAME: {
          // no way to refuse this option but closing the connection
          let e: VDiskExport;
          try {
            e = VDiskExport.open(ctx.vpool, raw.toString('utf8'), ctx.fds);
          } catch (err) {
            throw new ProtocolError(`NBD_OPT_EXPORT_NAME: ${(err as Error).message}`);
          }
          const flags = transmissionFlags(e);
          io.write(exportNameReply(e.size, flags, noZeroes));
          return { export: e, structured, baseAllocation: meta !== undefined && meta.name === e.name && meta.base, flags };
        }
        case OPT.ABORT:
          reply(REP.ACK);
          return undefined;
        case OPT.LIST:
          d.end();
          for (const name of listExports(ctx.vpool)) reply(REP.SERVER, repServer(name));
          reply(REP.ACK);
          break;
        case OPT.STARTTLS:
          d.end();
          if (ctx.tls === 'none') fail(REP.ERR_POLICY, 'TLS is not configured on this listener');
          else if (tlsUp) fail(REP.ERR_INVALID, 'TLS is already up');
          else {
            reply(REP.ACK);
            await io.startTls();
            tlsUp = true;
            // what was negotiated in the clear does not count (the spec's rule against a downgrade)
            structured = false;
            meta = undefined;
          }
          break;
        case OPT.INFO:
        case OPT.GO: {
          const name = d.str(d.u32());
          const n = d.u16();
          for (let i = 0; i < n; i++) d.u16(); // requested infos: block size is always sent, name/description never needed
          d.end();
          let e: VDiskExport;
          try {
            e = VDiskExport.open(ctx.vpool, name, opt === OPT.GO ? ctx.fds : undefined);
          } catch (err) {
            if (!(err instanceof ExportError)) throw err;
            fail(err.kind === 'invalid' ? REP.ERR_INVALID : REP.ERR_UNKNOWN, err.message);
            break;
          }
          const flags = transmissionFlags(e);
          reply(REP.INFO, infoExport(e.size, flags));
          reply(REP.INFO, infoBlockSize(BLOCK_MIN, BLOCK_PREFERRED, MAX_PAYLOAD));
          reply(REP.ACK);
          if (opt === OPT.INFO) {
            e.close();
            break;
          }
          return { export: e, structured, baseAllocation: structured && meta !== undefined && meta.name === e.name && meta.base, flags };
        }
        case OPT.STRUCTURED_REPLY:
          d.end();
          structured = true;
          reply(REP.ACK);
          break;
        case OPT.LIST_META_CONTEXT:
        case OPT.SET_META_CONTEXT: {
          const set = opt === OPT.SET_META_CONTEXT;
          const name = d.str(d.u32());
          const queries: string[] = [];
          for (let n = d.u32(); n > 0; n--) queries.push(d.str(d.u32()));
          d.end();
          if (set && !structured) {
            fail(REP.ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs structured replies (NBD_OPT_STRUCTURED_REPLY) first');
            break;
          }
          let e: VDiskExport;
          try {
            e = VDiskExport.open(ctx.vpool, name, undefined);
          } catch (err) {
            if (!(err instanceof ExportError)) throw err;
            fail(err.kind === 'invalid' ? REP.ERR_INVALID : REP.ERR_UNKNOWN, err.message);
            break;
          }
          e.close();
          // base:allocation is the one context: a LIST without queries, or with `base:`, names it too
          const base = set ? queries.includes(BASE_ALLOCATION) : queries.length === 0 || queries.some((q) => q === BASE_ALLOCATION || q === 'base:');
          if (base) reply(REP.META_CONTEXT, repMetaContext(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION));
          if (set) meta = { name: e.name, base };
          reply(REP.ACK);
          break;
        }
        default:
          fail(REP.ERR_UNSUP, `option ${opt} is not supported by this server`);
      }
    } catch (err) {
      if (!(err instanceof Invalid)) throw err;
      fail(REP.ERR_INVALID, `option ${opt}: ${err.message}`);
    }
  }
}
