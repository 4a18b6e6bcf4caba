/**
 * What every vDisk opened from one state directory shares (VDiskContext, ./vdisk/vdisk-context.ts): the
 * write cache, read cache and upload slots under that directory, over a backend already wrapped in its write
 * gate. Built by openVPool (./vpool.ts: the vPool's claim as the gate) and by openDelegatedVDisk
 * (./vpool-delegate.ts: one delegated vDisk, the registry's confirmation as the gate).
 */
import path from 'node:path';
import fs from 'node:fs';
import { VolumeError } from '../util/errors.js';
import type { MetadataStore } from '../mds/types.js';
import type { BlobStore } from './backend/types.js';
import { FencedStore } from './claim/fenced-store.js';
import { ReadCache } from './datapath/read/read-cache.js';
import { Semaphore } from './datapath/upload/uploader.js';
import { UploadBuffers } from './datapath/upload/upload-buffers.js';
import { statfsDisk, WriteCacheSpace } from './datapath/write-cache/write-cache-space.js';
import { CHECKPOINT_JOBS } from './vdisk/checkpointer.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { DEFAULT_READ_CACHE_BYTES, DEFAULT_WRITE_CACHE_BYTES } from './types.js';
import type { VPoolOptions } from './vpool-options.js';

export type ContextTuning = Pick<VPoolOptions, 'stateReserveBytes' | 'writeCacheBytes' | 'readCacheBytes' | 'scoClusters' | 'tlogScos' | 'dtl' | 'cacheIo' | 'checkpointEveryTlogs' | 'loadCheckpoints'>;

export function vdiskContext(stateDir: string, backend: BlobStore, mds: MetadataStore, routerId: string, opts: ContextTuning,
  fencing: Pick<VDiskContext, 'fenceEpoch' | 'fenced' | 'fenceTag' | 'beforeAck' | 'ownerTag' | 'claimEpoch'>): VDiskContext {
  const writeCacheDir = path.join(stateDir, 'wc');
  fs.mkdirSync(writeCacheDir, { recursive: true });
  const disk = statfsDisk(writeCacheDir, opts.stateReserveBytes);
  return {
    backend, mds,
    // bounded by the limit and by the real free space of the state disk, minus a reserve for metadata commits
    space: new WriteCacheSpace(opts.writeCacheBytes ?? DEFAULT_WRITE_CACHE_BYTES, disk),
    readCache: new ReadCache(path.join(stateDir, 'rc'), opts.readCacheBytes ?? DEFAULT_READ_CACHE_BYTES, backend, disk),
    uploads: new Semaphore(4),
    uploadBuffers: new UploadBuffers(),
    checkpointJobs: new Semaphore(CHECKPOINT_JOBS),
    routerId,
    ...fencing,
    // a delegated vDisk's store is fenced by its VDiskGate, which checks before acknowledging; the vPool's claim does not
    ...(backend instanceof FencedStore && backend.checksAcks ? { beforeAck: (what: string) => backend.beforeAck(what) } : {}),
    writeCacheDir,
    scoClusters: checkTuning(opts.scoClusters ?? 1024, 'scoClusters', 1, 65536),
    tlogScos: checkTuning(opts.tlogScos ?? 16, 'tlogScos', 1, 100000),
    dtl: opts.dtl,
    io: opts.cacheIo,
    checkpointEveryTlogs: opts.checkpointEveryTlogs === undefined ? undefined : checkTuning(opts.checkpointEveryTlogs, 'checkpointEveryTlogs', 0, 1_000_000),
    loadCheckpoints: opts.loadCheckpoints,
  };
}

function checkTuning(v: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new VolumeError('INVALID', `${name} must be an integer in ${min}..${max}, got ${v}`, { [name]: v });
  return v;
}
