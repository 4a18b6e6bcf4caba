#!/usr/bin/env node
/**
 * The `vpoolfs` command line (DESIGN §1): `mount`, `dtl-server`, and the management verbs, which speak to
 * the daemon's management API (api/, found from the path: tools/client/locate.ts): `ls`, `du`, `info`, `create`,
 * `resize`, `rm` (tools/commands/disk-cmds.ts), `status` (tools/commands/status-cmd.ts), `snapshot create|list|delete|sticky`,
 * `rollback`, `clone`, `template` (tools/commands/snapshot-cmds.ts); `scrub`, `gc` (tools/commands/scrub-cmds.ts); `rekey` (tools/commands/rekey-cmd.ts); `backend-move` (tools/commands/move-cmd.ts); `router list` (tools/commands/router-cmds.ts), `takeover` (tools/commands/takeover-cmd.ts) and `move` (tools/commands/router-move-cmd.ts), from etcd. `--version`. Errors print one clear line on
 * stderr — for a refusal, the API's sentence and the errno name — and exit 1; bad flags are rejected by
 * commander before anything happens.
 */
import { Command, Option } from 'commander';
import { ApiClientError } from '../api/client.js';
import { ApiError } from '../api/errors.js';
import { VpoolError } from '../util/errors.js';
import { ConfigError } from './daemon/config.js';
import { setSocket } from './client/api-call.js';
import { addDiskCommands } from './commands/disk-cmds.js';
import { DEFAULT_DTL_LISTEN, runDtlServer, type DtlServerFlags } from './commands/dtl-server-cmd.js';
import { LocateError } from './client/locate.js';
import { runMount, type MountFlags } from './commands/mount-cmd.js';
import { addRegistrySecurityOptions } from './daemon/registry-flags.js';
import { MountpointError } from './daemon/mountpoint.js';
import { addSnapshotCommands } from './commands/snapshot-cmds.js';
import { addScrubCommands } from './commands/scrub-cmds.js';
import { addRekeyCommand } from './commands/rekey-cmd.js';
import { addMoveCommand } from './commands/move-cmd.js';
import { addStatusCommand } from './commands/status-cmd.js';
import { addRouterCommands } from './commands/router-cmds.js';
import { addTakeoverCommand } from './commands/takeover-cmd.js';
import { addRouterMoveCommand } from './commands/router-move-cmd.js';
import { VERSION } from './version.js';

/** One clear line for the errors vpoolfs raises on purpose (with their cause); a stack only for the unexpected. */
function fail(err: unknown): never {
  let text: string;
  if (err instanceof ApiClientError) text = `${err.message} (${err.body.errno})`;
  else if (err instanceof ApiError) text = err.message;
  else if (err instanceof ConfigError || err instanceof MountpointError || err instanceof LocateError) text = err.message;
  else if (err instanceof VpoolError) {
    const cause = (err as { cause?: unknown }).cause;
    text = `${err.message} (${err.code}${cause instanceof Error && !err.message.includes(cause.message) ? `: ${cause.message}` : ''})`;
  } else text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`vpoolfs: ${text}\n`);
  process.exit(1);
}

const program = new Command()
  .name('vpoolfs')
  .description('a storage driver for virtual machines: thin vDisks on a FUSE mount')
  .version(VERSION, '-V, --version', 'print the version of vpoolfs')
  .option('--socket <path>', "the management API's unix socket (default: the one the mount names, <state>/api.sock)")
  .showHelpAfterError();

/** Runs a management verb with the global --socket; any failure goes to fail(). */
const run = (fn: () => Promise<void>): Promise<void> => {
  setSocket((program.opts() as { socket?: string }).socket);
  return fn().catch(fail);
};

addRegistrySecurityOptions(program
  .command('mount')
  .description('mount a vPool in the foreground until SIGINT/SIGTERM')
  .argument('<mountpoint>', 'where to mount; its basename is the default vPool name')
  .option('--vpool <name>', 'vPool name (default: basename of MOUNTPOINT)')
  .option('--state <dir>', 'write cache, read cache, local metadata (default: /var/lib/vpoolfs/<vpool>)')
  .option('--backend <url>', 'file:///dir, s3://bucket/prefix?…, mem://name (default: file://<state>/backend)')
  .option('--encryption-key-file <file>', '32-byte key, raw or 64 hex characters: every object written to the backend is encrypted with AES-256-GCM (docs/encryption.md)')
  .option('--old-encryption-key-file <file>', 'key rotation: the previous key, read with until `vpoolfs rekey` has rewritten every object under --encryption-key-file (repeatable)', (v: string, prev?: string[]) => [...(prev ?? []), v])
  .option('--rekey-objects-per-second <n>', 'budget of the rekey job: at most N objects re-encrypted per second (default: no limit)')
  .option('--move-from <url>', 'move the vPool from this backend to --backend while serving: writes go to both, the move job copies, then switches (`vpoolfs backend-move`)')
  .option('--move-objects-per-second <n>', 'budget of the move job: at most N objects copied per second (default: no limit)')
  .addOption(new Option('--dtl <mode>', 'DTL mode for new vDisks (async and sync need --dtl-server)').choices(['none', 'async', 'sync']))
  .option('--dtl-server <list>', 'DTL servers HOST:PORT[,HOST:PORT…], tried in order')
  .option('--dtl-secret-file <file>', "the DTL servers' shared secret (their --secret-file)")
  .option('--router <id>', "this storage router's identity (default: hostname)")
  .option('--registry <url>', 'etcd://HOST:PORT[,HOST:PORT…] (etcds://… for TLS): register this router there and own the vPool through it (docs/cluster.md)'), 'config')
  .option('--standby', "with --registry: wait while another live router owns the vPool, take it over when that router's lease expires, then mount")
  .option('--failure-domain <name>', "this router's failure domain, recorded in the registry")
  .option('--no-follow', 'with --registry: refuse the mount while another live router owns the vPool (by default this router mounts it as a follower, forwarding to the owner; docs/cluster.md)')
  .option('--peer-listen <host:port>', 'with --registry: where the router link listens for followers (default 127.0.0.1:0); off loopback only with --peer-secret-file')
  .option('--peer-secret-file <file>', "the router link's shared secret, the same on every router of the vPool (16+ bytes)")
  .option('--config <file>', 'JSON config with the same keys plus tuning; watched')
  .option('--force', "take the vPool even while another router's claim on the backend is live: that router is fenced (only when it is really gone; docs/cluster.md)")
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (default: off)')
  .option('--metrics-top-vdisks <n>', 'per-vDisk metrics for the N busiest vDisks (default 10; 0: none)')
  .option('--api <host:port>', 'the management API on TCP too (always on <state>/api.sock); off loopback only with --api-token-file')
  .option('--api-token-file <file>', 'the token TCP clients of the API send as "Authorization: Bearer TOKEN" (first line, 16+ characters)')
  .addOption(new Option('--fuse-engine <engine>', 'kernel: vpoolfs speaks the FUSE protocol on /dev/fuse itself (default); fuse-native: libfuse2').choices(['kernel', 'fuse-native']))
  .option('--nbd <address>', 'also serve every vDisk over NBD at unix:/PATH or HOST:PORT (repeat or comma-separate; default: off; docs/nbd.md)', (v: string, prev?: string[]) => [...(prev ?? []), v])
  .option('--nbd-tls-cert <file>', 'PEM certificate for the NBD TCP listeners (STARTTLS; required off loopback)')
  .option('--nbd-tls-key <file>', 'PEM private key of --nbd-tls-cert')
  .option('--debug-fuse', 'FUSE debug output: every request at debug level (kernel), libfuse on stderr (fuse-native)')
  .action((mountpoint: string, flags: MountFlags) => runMount(mountpoint, flags).catch(fail));

program
  .command('dtl-server')
  .description('run a DTL server in the foreground: keeps the writes of vDisks on other hosts until they are in the backend')
  .option('--listen <host:port>', 'address to listen on (without --secret-file: loopback only)', DEFAULT_DTL_LISTEN)
  .requiredOption('--dir <dir>', 'where the entries are kept (one directory per vDisk)')
  .option('--secret-file <file>', 'shared secret: both ends prove it with an HMAC challenge on connect')
  .action((flags: DtlServerFlags) => runDtlServer(flags).catch(fail));

addDiskCommands(program, run);
addStatusCommand(program, run);
addSnapshotCommands(program, run);
addScrubCommands(program, fail);
addRekeyCommand(program, run);
addMoveCommand(program, run);
addRouterCommands(program, fail);
addTakeoverCommand(program, fail);
addRouterMoveCommand(program, fail);

await program.parseAsync(process.argv);
