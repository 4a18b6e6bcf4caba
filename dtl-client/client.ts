/**
 * The DTL client: the commands of the wire protocol (after Open vStorage's FailOverCache) over one
 * connection at a time to the first reachable of the configured servers, tried in order. A failed
 * request drops the connection; the next call reconnects (the caller decides when: see bridge.ts).
 * Every failure is a DtlError: UNREACHABLE / TIMEOUT (try again later or elsewhere), AUTH (wrong or
 * missing secret), NOT_REGISTERED, PROTOCOL, STORAGE, FENCED (a newer owner registered or recovered the vDisk
 * on that server: fence.ts).
 */
import { Connection } from './connection.js';
import { DtlError } from './errors.js';
import { Msg } from './frame.js';
import { writeOwner, type Owner } from './fence.js';
import { decodeEntry, entryLength, entryTag, Reader, Writer, type DtlEntry } from './messages.js';

export interface DtlClientOptions {
  /** HOST:PORT of each server, in order of preference. */
  servers: string[];
  secret?: Buffer;
  /** Per request and for the handshake (default 5000 ms). */
  timeoutMs?: number;
  /**
   * false: a request never opens a connection by itself; once the live one is lost, requests fail with
   * UNREACHABLE until connect() is called again. A bridge needs this: what it registered, cleared and
   * shipped holds on one server, and a request quietly sent to another would land after that server's
   * stale copy (default true: each call reconnects, for one-shot users such as recovery).
   */
  reconnect?: boolean;
  /** Called when the live connection is lost (not when this client drops or closes it). */
  onLost?: (server: string) => void;
}

export interface RemoteRange {
  registered: boolean;
  epoch: number;
  router: string;
  first: number;
  last: number;
  entries: number;
}

export class DtlClient {
  private conn: Connection | null = null;
  private connecting: Promise<Connection> | null = null;
  private closed = false;
  private readonly timeoutMs: number;

  constructor(private readonly opts: DtlClientOptions) {
    if (opts.servers.length === 0) throw new DtlError('INVALID', 'no DTL server configured');
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** The server of the live connection, or null. */
  get server(): string | null {
    return this.conn !== null && this.conn.alive ? this.conn.server : null;
  }

  /** Connects to the first reachable server (in configured order) unless connected already. */
  async connect(): Promise<string> {
    return (await this.open()).server;
  }

  /** Connects to one particular server (recovery asks each in turn). */
  async connectTo(server: string): Promise<void> {
    this.drop();
    this.conn = this.keep(await Connection.open(server, this.opts.secret, this.timeoutMs));
  }

  /** Drops the connection; the next call connects again. */
  drop(): void {
    const conn = this.conn;
    this.conn = null; // first: closing it is not a loss to report
    conn?.close();
  }

  close(): void {
    this.closed = true;
    this.drop();
  }

  /**
   * Creates the vDisk's log on the server (or takes it over: entries are kept), recording router and epoch.
   * `owner` (fence.ts): the incarnation this router serves the vDisk as; it raises the server's fence, and the
   * changes this connection makes to the log are refused (FENCED) once a newer owner raised it further. Without
   * one (a client from before fencing) nothing is fenced, and a fenced vDisk refuses it.
   */
  async register(vdisk: string, router: string, epoch: number, owner?: Owner): Promise<void> {
    const w = new Writer().str(vdisk).str(router).f64(epoch);
    await this.call(Msg.Register, owner === undefined ? w : writeOwner(w, owner));
  }

  /** A new owner's recovery: raises the vDisk's fence to `owner` (FENCED if it is older than the fence). */
  async fence(vdisk: string, owner: Owner): Promise<void> {
    await this.call(Msg.Fence, writeOwner(new Writer().str(vdisk).str(owner.router), owner));
  }

  /** Appends entry records (encodeEntry); in the server's kernel when this resolves (kill -9 safe). */
  /** `crcs[i]`, when given, is the crc32 of `records[i]` (encodeClusterEntry): the frame's checksum is combined from them. */
  async addEntries(vdisk: string, records: Buffer[], crcs?: ReadonlyArray<number | undefined>): Promise<void> {
    const conn = await this.connection();
    await this.guard(conn.request(Msg.AddEntries, [new Writer().str(vdisk).u32(records.length).done(), ...records], undefined, crcs === undefined ? undefined : [undefined, ...crcs]).then(none));
  }

  /** Every entry added so far is on the server's disk when this resolves (power-loss safe). */
  async flush(vdisk: string): Promise<void> {
    await this.call(Msg.Flush, new Writer().str(vdisk));
  }

  async getScoRange(vdisk: string): Promise<RemoteRange> {
    return this.call(Msg.GetScoRange, new Writer().str(vdisk), (r) => {
      const flag = r.u8();
      const range = { registered: flag === 1, epoch: r.f64(), router: r.str(), first: r.u32(), last: r.u32(), entries: r.f64() };
      r.end();
      // recovery picks the highest epoch: a NaN or infinite one would win (or lose) against every other copy
      if (flag > 1 || !Number.isFinite(range.epoch) || !Number.isSafeInteger(range.entries) || range.entries < 0) {
        throw new DtlError('PROTOCOL', `a malformed range from the server: ${JSON.stringify({ ...range, epoch: String(range.epoch), entries: String(range.entries) })}`);
      }
      return range;
    });
  }

  /**
   * Calls `onEntry` for each entry with tag >= fromTag above the trim floor, in log order. Each Entries
   * frame is checked whole before any of its entries is handed out: every entry sound, exactly `count` of
   * them, tags >= fromTag and never decreasing (else PROTOCOL, and the entries of that frame are not given).
   */
  async getEntries(vdisk: string, fromTag: number, onEntry: (e: DtlEntry) => void): Promise<number> {
    let n = 0;
    let lastTag = fromTag;
    const conn = await this.connection();
    await this.guard(conn.request(Msg.GetEntries, new Writer().str(vdisk).u32(fromTag).done(), (count, run) => {
      const found: Array<{ pos: number; length: number }> = [];
      let pos = 0;
      let tag = lastTag;
      while (pos < run.length) {
        const l = entryLength(run, pos);
        if (!l.ok) throw new DtlError('PROTOCOL', `a damaged entry from the server: ${l.reason}`);
        const t = entryTag(run, pos);
        if (t < tag) throw new DtlError('PROTOCOL', `an entry with tag ${t} after tag ${tag} (asked from ${fromTag}): the server's log is out of order`);
        tag = t;
        found.push({ pos, length: l.length });
        pos += l.length;
      }
      if (found.length !== count) throw new DtlError('PROTOCOL', `an Entries frame announcing ${count} entries holds ${found.length}`);
      lastTag = tag;
      for (const e of found) onEntry(decodeEntry(run, e.pos, e.length));
      n += found.length;
    }).then(none));
    return n;
  }

  /** Drops the entries with tag <= sco: their SCOs are in the backend. */
  async removeUpTo(vdisk: string, sco: number): Promise<void> {
    await this.call(Msg.RemoveUpTo, new Writer().str(vdisk).u32(sco));
  }

  /** Drops every entry of the vDisk (it is shipped again from the write cache); takes effect at the next flush(), until then readers see the entries before it. */
  async clear(vdisk: string): Promise<void> {
    await this.call(Msg.Clear, new Writer().str(vdisk));
  }

  /** Forgets the vDisk on the server, files and all. */
  async unregister(vdisk: string): Promise<void> {
    await this.call(Msg.Unregister, new Writer().str(vdisk));
  }

  /** One request; `parse` reads the reply's body (by default: there must be none). */
  private async call<T = void>(type: Msg, w: Writer, parse: (r: Reader) => T = none as (r: Reader) => T): Promise<T> {
    const conn = await this.connection();
    return this.guard(conn.request(type, w.done()).then(parse));
  }

  /** A transport failure or a malformed reply drops the connection so that the next call reconnects. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      const e = err as DtlError;
      if (e.code === 'UNREACHABLE' || e.code === 'TIMEOUT' || e.code === 'PROTOCOL') this.drop();
      throw err;
    }
  }

  /** The live connection; without `reconnect`, none is opened here. */
  private connection(): Promise<Connection> {
    if (this.opts.reconnect === false && !this.closed && this.conn?.alive !== true) {
      const why = this.conn === null ? 'not connected to a DTL server' : `the connection to DTL server ${this.conn.server} was lost`;
      return Promise.reject(new DtlError('UNREACHABLE', why, { server: this.conn?.server ?? null }));
    }
    return this.open();
  }

  /** The live connection, or a new one to the first reachable server. */
  private open(): Promise<Connection> {
    if (this.closed) return Promise.reject(new DtlError('CLOSED', 'the DTL client is closed'));
    if (this.conn !== null && this.conn.alive) return Promise.resolve(this.conn);
    this.connecting ??= (async () => {
      const errors: DtlError[] = [];
      // a snapshot: with a registry the list is reordered in place while this loop awaits (tools/daemon/dtl-registry.ts)
      for (const server of [...this.opts.servers]) {
        try {
          this.conn = this.keep(await Connection.open(server, this.opts.secret, this.timeoutMs));
          return this.conn;
        } catch (err) {
          if ((err as DtlError).code === 'CLOSED') throw err;
          errors.push(err as DtlError);
        }
      }
      const code = errors.every((e) => e.code === 'AUTH') ? 'AUTH' : 'UNREACHABLE';
      throw new DtlError(code, `no DTL server reachable: ${errors.map((e) => e.message).join('; ')}`, { servers: this.opts.servers });
    })().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** A connection that completed after close() is closed at once, not kept (it would stay open for ever). */
  private keep(conn: Connection): Connection {
    if (this.closed) {
      conn.close();
      throw new DtlError('CLOSED', 'the DTL client was closed while it connected');
    }
    conn.onClose = () => {
      if (this.conn === conn) this.opts.onLost?.(conn.server);
    };
    return conn;
  }
}

/** The body of a reply that has none. */
function none(r: Reader): void {
  r.end();
}
