/**
 * Where things live in the backend. One vPool per backend URL (a bucket prefix or a directory):
 *
 *   pool/tree.json              the directory tree, each vDisk's configuration and plain xattrs
 *   vdisks/<id>/sco/<n>         SCOs (see sco-format.ts)
 *   vdisks/<id>/tlog/<n>        TLogs (see tlog-format.ts), uploaded after the SCOs they name
 */
import type { BlobStore } from '../backend/types.js';
import { scoName } from './sco-format.js';
import { tlogName } from './tlog-format.js';

export const TREE_KEY = 'pool/tree.json';
export const vdiskPrefix = (id: string): string => `vdisks/${id}/`;
export const scoKey = (id: string, sco: number): string => `vdisks/${id}/sco/${scoName(sco)}`;
export const tlogKey = (id: string, tlog: number): string => `vdisks/${id}/tlog/${tlogName(tlog)}`;

/** The number at the end of a SCO or TLog key. */
export function keyNumber(key: string): number {
  return parseInt(key.slice(key.lastIndexOf('/') + 1), 16);
}

/** The numbers of vDisk `id`'s TLogs in the backend, ascending (every replay from the backend starts here). */
export async function backendTlogs(backend: BlobStore, id: string): Promise<number[]> {
  return (await backend.list(`vdisks/${id}/tlog/`)).map(keyNumber).sort((a, b) => a - b);
}
