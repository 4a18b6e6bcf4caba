/**
 * `vpoolfs dtl-server --listen HOST:PORT --dir DIR [--secret-file F]`: runs a DTL server in the
 * foreground until SIGINT/SIGTERM (then it flushes its files and exits 0). The default listen address
 * is on loopback; a routable address needs --secret-file.
 */
import { readSecretFile } from '../../dtl-client/auth.js';
import { DtlError } from '../../dtl-client/errors.js';
import { DtlServer } from '../../dtl-client/server.js';
import { logger } from '../../util/log.js';
import { ConfigError, parseHostPort } from '../daemon/config.js';

const log = logger('cli');

export interface DtlServerFlags {
  listen: string;
  dir: string;
  secretFile?: string;
}

export const DEFAULT_DTL_LISTEN = '127.0.0.1:26200';

export async function runDtlServer(flags: DtlServerFlags): Promise<void> {
  const { host, port } = parseHostPort(flags.listen, '--listen');
  let server: DtlServer;
  try {
    const secret = flags.secretFile === undefined ? undefined : readSecretFile(flags.secretFile);
    server = await DtlServer.start({ host, port, dir: flags.dir, secret });
  } catch (err) {
    if (err instanceof DtlError) throw new ConfigError(err.message);
    throw err;
  }
  // the tests read the port from this line when they ask for port 0
  process.stdout.write(`listening ${server.address}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping the DTL server`);
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('closing the DTL server failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack }));
}
