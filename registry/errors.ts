/**
 * Errors of the registry: BUSY for a refusal (a router name or a vPool held by a live router, named in the
 * message), BACKEND for etcd not answering. tools/cli.ts prints them as one line with the code.
 */
import { VpoolError } from '../util/errors.js';

export class RegistryError extends VpoolError {}
