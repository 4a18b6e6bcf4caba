/**
 * A raw NBD client for the tests that break the protocol on purpose (bad-client and fuzz tests): it writes
 * whatever bytes it is given and reads the server's replies byte by byte, with no libnbd in between to
 * refuse. Big-endian layouts written out here from the spec, not taken from nbd/wire.ts.
 */
import net from 'node:net';

export const NBDMAGIC = Buffer.from('NBDMAGIC');
export const IHAVEOPT = Buffer.from('IHAVEOPT');
export const OPT_REPLY_MAGIC = Buffer.from('0003e889045565a9', 'hex');
export const ERR_BIT = 0x80000000;

export class RawNbd {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  /** Resolves when the server closed the connection (or it failed). */
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => {
      const done = () => {
        this.isClosed = true;
        this.waiter?.();
        resolve();
      };
      socket.on('close', done);
      socket.on('error', () => undefined);
    });
  }

  static connect(sockPath: string): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const s = net.connect(sockPath, () => resolve(new RawNbd(s)));
      s.once('error', reject);
    });
  }

  get ended(): boolean {
    return this.isClosed;
  }

  write(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  /** Exactly n bytes; rejects if the connection closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.isClosed) throw new Error(`connection closed with ${this.buf.length} of ${n} bytes read`);
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The greeting; answers with client flags (fixed newstyle + no zeroes by default). */
  async greet(clientFlags = 3): Promise<void> {
    const g = await this.read(18);
    if (!g.subarray(0, 8).equals(NBDMAGIC) || !g.subarray(8, 16).equals(IHAVEOPT)) throw new Error(`bad greeting ${g.toString('hex')}`);
    this.write(u32(clientFlags));
  }

  sendOption(opt: number, data: Buffer = Buffer.alloc(0)): void {
    this.write(Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]));
  }

  /** One option reply: option, type, data. */
  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (!h.subarray(0, 8).equals(OPT_REPLY_MAGIC)) throw new Error(`bad option reply magic ${h.toString('hex')}`);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(h.readUInt32BE(16)) };
  }

  /** Handshake to transmission on `name` with structured replies and base:allocation; returns the size. */
  async go(name: string): Promise<number> {
    await this.greet();
    this.sendOption(8);
    if ((await this.optionReply()).type !== 1) throw new Error('STRUCTURED_REPLY refused');
    const n = Buffer.from(name);
    this.sendOption(10, Buffer.concat([u32(n.length), n, u32(1), u32(15), Buffer.from('base:allocation')]));
    while ((await this.optionReply()).type !== 1);
    this.sendOption(7, Buffer.concat([u32(n.length), n, Buffer.from([0, 0])]));
    let size = -1;
    for (;;) {
      const r = await this.optionReply();
      if (r.type & ERR_BIT) throw new Error(`GO refused: ${r.data.toString()}`);
      if (r.type === 3 && r.data.readUInt16BE(0) === 0) size = Number(r.data.readBigUInt64BE(2));
      if (r.type === 1) return size;
    }
  }

  request(type: number, offset: number, length: number, cookie: bigint, flags = 0, payload?: Buffer): void {
    const b = Buffer.alloc(28);
    b.writeUInt32BE(0x25609513, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    b.writeBigUInt64BE(cookie, 8);
    b.writeBigUInt64BE(BigInt(offset), 16);
    b.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([b, payload]) : b);
  }

  /** One structured reply chunk: flags, type, cookie, payload; an error chunk's errno and message decoded. */
  async chunk(): Promise<{ flags: number; type: number; cookie: bigint; payload: Buffer; error?: number; message?: string }> {
    const h = await this.read(20);
    if (h.readUInt32BE(0) !== 0x668e33ef) throw new Error(`not a structured reply: ${h.toString('hex')}`);
    const payload = await this.read(h.readUInt32BE(16));
    const type = h.readUInt16BE(6);
    const c = { flags: h.readUInt16BE(4), type, cookie: h.readBigUInt64BE(8), payload };
    if (type & 0x8000) return { ...c, error: payload.readUInt32BE(0), message: payload.subarray(6, 6 + payload.readUInt16BE(4)).toString() };
    return c;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}
