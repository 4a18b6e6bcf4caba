/**
 * The daemon's NBD server (`vpoolfs mount … --nbd unix:PATH|HOST:PORT`): one listener per address, every
 * vDisk of the vPool an export named by its path. Started after the mount, stopped before the vPool stops
 * (tools/commands/mount-cmd.ts). TCP listeners require TLS when a certificate is given (and must have one off
 * loopback, address.ts); unix sockets are created mode 0600 (root's QEMU, or chown it).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FdTable } from '../fuse/fds.js';
import { logger } from '../util/log.js';
import type { VPool } from '../volume/types.js';
import { checkNbdListen, parseNbdAddress, type NbdAddress } from './address.js';
import { Connection } from './connection.js';

const log = logger('nbd');

/** Connections at most at once; more are closed right away (and logged). */
const MAX_CONNECTIONS = 256;
/** How long stop() lets the requests in flight answer before it cuts the connections. */
const STOP_GRACE_MS = 30_000;

export interface NbdServerOptions {
  vpool: VPool;
  /** The mount's open-file table: open exports count as open files (rollback answers EBUSY). */
  fds?: FdTable;
  /** `unix:/PATH` or `HOST:PORT` (port 0: any free port). */
  listen: string[];
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

export interface NbdServer {
  /** Where it listens, as `unix:/PATH` or `HOST:PORT` (the real port when 0 was asked). */
  readonly addresses: string[];
  /** Stops listening, lets the requests in flight answer, closes every connection and removes the sockets. */
  close(): Promise<void>;
}

export async function startNbdServer(o: NbdServerOptions): Promise<NbdServer> {
  const addrs: NbdAddress[] = o.listen.map((s) => parseNbdAddress(s, '--nbd'));
  if ((o.tlsCertFile === undefined) !== (o.tlsKeyFile === undefined)) throw new Error('--nbd-tls-cert and --nbd-tls-key go together');
  checkNbdListen(addrs, o.tlsCertFile !== undefined, '--nbd');
  const secureContext = o.tlsCertFile !== undefined
    ? tls.createSecureContext({ cert: fs.readFileSync(o.tlsCertFile), key: fs.readFileSync(o.tlsKeyFile!) })
    : undefined;
  const connections = new Set<Connection>();
  const servers: { server: net.Server; unixPath?: string }[] = [];
  const addresses: string[] = [];

  const listenOne = async (a: NbdAddress): Promise<void> => {
    const ctxTls = a.kind === 'tcp' ? secureContext : undefined;
    const server = net.createServer((socket) => {
      if (connections.size >= MAX_CONNECTIONS) {
        log.warn('NBD connection refused: too many connections', { listener: a.text, max: MAX_CONNECTIONS });
        socket.destroy();
        return;
      }
      socket.on('error', () => undefined); // logged by the connection; never an uncaught error
      const c = new Connection(socket, { vpool: o.vpool, fds: o.fds, secureContext: ctxTls, listener: a.text });
      connections.add(c);
      void c.finished.finally(() => connections.delete(c));
    });
    if (a.kind === 'unix') {
      fs.mkdirSync(path.dirname(a.path), { recursive: true });
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(a.path);
      } catch {
        st = undefined;
      }
      if (st && !st.isSocket()) throw new Error(`--nbd ${a.text}: ${a.path} exists and is not a socket`);
      if (st) fs.unlinkSync(a.path); // a socket left by a daemon that was killed (the state lock says no other one runs)
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`--nbd ${a.text}: cannot listen (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
      if (a.kind === 'unix') server.listen(a.path, resolve);
      else server.listen(a.port, a.host, resolve);
    });
    server.on('error', (e) => log.error('NBD listener error', { listener: a.text, error: e.message }));
    if (a.kind === 'unix') {
      fs.chmodSync(a.path, 0o600);
      servers.push({ server, unixPath: a.path });
      addresses.push(a.text);
    } else {
      servers.push({ server });
      const port = (server.address() as net.AddressInfo).port;
      addresses.push(`${a.host.includes(':') ? `[${a.host}]` : a.host}:${port}`);
    }
  };

  const closeAll = async (): Promise<void> => {
    // server.close() calls back once every connection has ended: start it, then end the connections
    const listenersClosed = Promise.all(servers.map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
    for (const c of connections) c.stop();
    const all = Promise.all([...connections].map((c) => c.finished));
    const within = (ms: number) => Promise.race([all.then(() => true), sleep(ms, false, { ref: false })]);
    if (!(await within(STOP_GRACE_MS))) {
      log.warn('NBD requests still in flight after the stop grace: cutting the connections', { connections: connections.size });
      for (const c of connections) c.destroy();
      await within(5000);
    }
    await Promise.race([listenersClosed, sleep(5000, undefined, { ref: false })]);
    for (const { unixPath } of servers) if (unixPath) fs.rmSync(unixPath, { force: true });
  };

  try {
    for (const a of addrs) await listenOne(a);
  } catch (err) {
    await closeAll();
    throw err;
  }
  log.info('NBD server listening', { addresses, tls: secureContext !== undefined });
  return { addresses, close: closeAll };
}
