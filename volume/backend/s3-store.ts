/**
 * S3BlobStore: the `s3://bucket/prefix?endpoint=URL&region=R&forcePathStyle=true` backend, through
 * @aws-sdk/client-s3 (URL keys in ./s3-url.ts). Tested against a real Ceph radosgw (tools/s3-server/).
 *
 * - Object `k` is the S3 object `<prefix>k` in the bucket; the bucket is created on open if missing. S3
 *   limits keys to 1024 bytes, prefix included: with a prefix, keys that would pass that are INVALID.
 * - put: one PutObject, or a multipart upload for objects of `multipartThreshold` bytes or more (parts
 *   uploaded 4 at a time; aborted on failure). S3 makes the new object visible whole or not at all, and
 *   only acknowledges it once stored. The ETag CompleteMultipartUpload returns is not used (Ceph 16 sends
 *   an empty one).
 * - getRange: one ranged GET; the total size from Content-Range tells a short answer (range past the end)
 *   apart. A zero-length range is a HeadObject.
 * - list: ListObjectsV2 pages of 1000, following continuation tokens, sorted in byte order.
 * - Retries: the SDK's standard retry mode (exponential back-off with jitter, `maxAttempts`); the volume's
 *   own retry loop (volume/backend/retry.ts) rides out longer outages on top of it.
 * - Connections: one keep-alive agent bounded to `maxSockets` sockets, with connect and request timeouts.
 * - Errors: 404/NoSuchKey → NOT_FOUND, 416/InvalidRange → INVALID, anything else → BACKEND, with the key
 *   in `context` and the SDK error as `cause`; `context.unreachable` is true for connection failures,
 *   timeouts and 5xx (isUnreachable).
 * - Open while the server is unreachable: goes on (a daemon restarted during an outage must mount from its
 *   local state); the bucket is checked before the first put instead.
 */
import http from 'node:http';
import https from 'node:https';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command,
  PutObjectCommand, S3Client, UploadPartCommand, type CompletedPart,
} from '@aws-sdk/client-s3';
import { BackendError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { BlobStore, ListOptions } from './types.js';
import { MAX_KEY_BYTES, checkRangeWithin, compareKeys, validateKey, validatePrefix, validateRangeArgs } from './keys.js';
import { parseS3Url, type S3Options } from './s3-url.js';
import { answerWithin, OPEN_PROBE_MS } from './retry.js';

const PART_CONCURRENCY = 4;
const log = logger('s3');
/** Node network errors that mean "the server is not there (now)", as opposed to a wrong host or credentials. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EPIPE', 'EAI_AGAIN', 'ECONNABORTED']);

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function status(err: unknown): number | undefined {
  return (err as SdkError | null)?.$metadata?.httpStatusCode;
}

/**
 * Whether an SDK error means the server is unreachable or failing (connection refused or reset, a timeout,
 * a 5xx): an outage to ride out. Auth errors (403), a bucket that is not ours, an unknown host (ENOTFOUND)
 * or missing credentials are not.
 */
export function isUnreachable(err: unknown): boolean {
  const s = status(err);
  if (s !== undefined) return s >= 500;
  const e = err as { name?: string; code?: string } | null;
  return e?.name === 'TimeoutError' || (typeof e?.code === 'string' && NETWORK_CODES.has(e.code));
}

function isNotFound(err: unknown): boolean {
  const e = err as SdkError | null;
  return status(err) === 404 || e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.Code === 'NoSuchKey';
}

export class S3BlobStore implements BlobStore {
  readonly url: string;
  private closed = false;
  /** Set when the bucket could not be checked at open (server unreachable): checked before the first put. */
  private bucketCheck: Promise<void> | null = null;
  private bucketUnchecked = false;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(private readonly opts: S3Options, private readonly client: S3Client) {
    this.url = opts.url;
  }

  /**
   * Opens the store for an s3:// URL and creates its bucket when missing. When the server is unreachable
   * (isUnreachable) the open goes on with a warning: operations fail (BACKEND, with `unreachable: true` in the
   * context) until it is back, and the bucket is checked (created if missing) before the first put. Any
   * other failure (credentials, permissions) fails the open at once.
   */
  static async open(url: string): Promise<S3BlobStore> {
    const opts = parseS3Url(url);
    // The SDK warns once that its releases after January 2027 need Node 22; package-lock.json pins one that
    // supports Node 20 (docs/s3.md). Set the variable to 'false' to see the warning.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets, maxFreeSockets: opts.maxSockets };
    const env = process.env;
    const client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      maxAttempts: opts.maxAttempts,
      retryMode: 'standard',
      // The data carries its own checksums (slots, TLogs, GCM tags); extra CRCs only where S3 requires them,
      // which is what S3-compatible servers such as Ceph 16 understand best.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? { credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined } }
        : {}),
      requestHandler: {
        httpAgent: new http.Agent(agentOpts),
        httpsAgent: new https.Agent(agentOpts),
        connectionTimeout: 5000,
        requestTimeout: 120_000,
        throwOnRequestTimeout: true,
      },
    });
    const store = new S3BlobStore(opts, client);
    try {
      // a hung endpoint (accepts, never answers) counts as unreachable after a few seconds, like a refused one
      await answerWithin(store.ensureBucket(), OPEN_PROBE_MS, store.url);
    } catch (err) {
      const hung = err instanceof BackendError && err.context.unreachable === true;
      if (hung || isUnreachable(err)) {
        store.bucketUnchecked = true;
        log.warn('backend unreachable at open: going on; the bucket is checked again before the first write', { url: store.url, error: hung ? (err as Error).message : store.mapError(err, 'open', '').message });
        return store;
      }
      client.destroy();
      throw store.mapError(err, 'open', '');
    }
    return store;
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.run('put', key, async () => {
      validateKey(key);
      if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `put ${key}: data is not a Uint8Array`, { key });
      const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength); // a view: put resolves only once the SDK is done with it
      if (body.length >= this.opts.multipartThreshold) await this.putMultipart(key, body);
      else await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key), Body: body, ContentLength: body.length }));
    });
  }

  /**
   * A PutObject with `If-None-Match: *`: the store refuses it (412) when the key exists. Radosgw 16 checks it
   * (test/s3-claim.test.ts); a store that ignores the header would make this a plain put — the claim
   * (volume/claim/claim.ts) reads its epoch object back after creating it, so two winners are still caught
   * at the next renewal.
   */
  createExclusive(key: string, data: Uint8Array): Promise<boolean> {
    return this.run('createExclusive', key, async () => {
      validateKey(key);
      if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `createExclusive ${key}: data is not a Uint8Array`, { key });
      const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key), Body: body, ContentLength: body.length, IfNoneMatch: '*' }));
        return true;
      } catch (err) {
        if (status(err) === 412 || status(err) === 409) return false;
        throw err;
      }
    });
  }

  get(key: string): Promise<Buffer> {
    return this.run('get', key, async () => {
      validateKey(key);
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key) }));
      return toBuffer(await r.Body!.transformToByteArray());
    });
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return this.run('getRange', key, async () => {
      validateKey(key);
      validateRangeArgs(key, offset, length);
      if (length === 0) {
        const h = await this.headObject(key);
        if (h === null) throw this.notFound(key);
        checkRangeWithin(key, offset, length, h.size);
        return Buffer.alloc(0);
      }
      let r;
      try {
        r = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key), Range: `bytes=${offset}-${offset + length - 1}` }));
      } catch (err) {
        if (status(err) === 416 || (err as SdkError).name === 'InvalidRange') {
          const h = await this.headObject(key);
          if (h === null) throw this.notFound(key);
          checkRangeWithin(key, offset, length, h.size);
        }
        throw err;
      }
      let body = toBuffer(await r.Body!.transformToByteArray());
      const total = /\/(\d+)$/.exec(r.ContentRange ?? '')?.[1];
      if (total !== undefined) checkRangeWithin(key, offset, length, Number(total));
      else if (r.$metadata.httpStatusCode === 200) {
        // a server that ignores Range sends the whole object
        checkRangeWithin(key, offset, length, body.length);
        body = body.subarray(offset, offset + length);
      }
      if (body.length !== length) {
        throw new BackendError('BACKEND', `getRange ${key}: asked for ${length} bytes at ${offset}, the server sent ${body.length}`, { key, offset, length });
      }
      return body;
    });
  }

  head(key: string): Promise<{ size: number } | null> {
    return this.run('head', key, async () => {
      validateKey(key);
      return this.headObject(key);
    });
  }

  list(prefix: string, opts?: ListOptions): Promise<string[]> {
    return this.run('list', prefix, async () => {
      validatePrefix(prefix);
      const out: string[] = [];
      const after = opts?.startAfter;
      // StartAfter: the server starts the listing there (the continuation token carries it on the next pages)
      const startAfter = after === undefined ? undefined : this.opts.prefix + after;
      let token: string | undefined;
      do {
        const r = await this.client.send(new ListObjectsV2Command({
          Bucket: this.opts.bucket, Prefix: this.opts.prefix + prefix, ContinuationToken: token, StartAfter: token === undefined ? startAfter : undefined, MaxKeys: 1000,
        }));
        for (const o of r.Contents ?? []) {
          const k = o.Key?.slice(this.opts.prefix.length);
          if (k !== undefined && o.Key!.startsWith(this.opts.prefix) && isKey(k) && (after === undefined || k > after)) out.push(k);
        }
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token !== undefined);
      return out.sort(compareKeys);
    });
  }

  delete(key: string): Promise<void> {
    return this.run('delete', key, async () => {
      validateKey(key);
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key) }));
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    this.client.destroy();
  }

  /** The S3 key of `key`; INVALID when the prefix makes it longer than S3's 1024 bytes. */
  private s3Key(key: string): string {
    const full = this.opts.prefix + key;
    if (full.length > MAX_KEY_BYTES) {
      throw new BackendError('INVALID', `key ${key.slice(0, 40)}… is too long for prefix ${this.opts.prefix}: S3 keys are at most ${MAX_KEY_BYTES} bytes with the prefix`, { key });
    }
    return full;
  }

  private async headObject(key: string): Promise<{ size: number } | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.s3Key(key) }));
      return { size: r.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** The bucket check an unreachable open skipped; shared by concurrent puts, tried again after a failure. */
  private checkBucketLate(): Promise<void> {
    this.bucketCheck ??= this.ensureBucket().then(
      () => {
        this.bucketUnchecked = false;
        log.info('backend reachable again: bucket checked', { url: this.url });
      },
      (err: unknown) => {
        this.bucketCheck = null;
        throw err;
      },
    );
    return this.bucketCheck;
  }

  private async ensureBucket(): Promise<void> {
    const Bucket = this.opts.bucket;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket }));
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket }));
    } catch (err) {
      const name = (err as SdkError).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
    }
  }

  /** A multipart upload of `body`; aborted (best effort) if any part fails, so no parts are left behind. */
  private async putMultipart(key: string, body: Buffer): Promise<void> {
    const Bucket = this.opts.bucket;
    const Key = this.s3Key(key);
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    if (UploadId === undefined) throw new BackendError('BACKEND', `put ${key}: CreateMultipartUpload returned no UploadId`, { key });
    try {
      const size = this.opts.partSize;
      const count = Math.ceil(body.length / size);
      const parts: CompletedPart[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          const chunk = body.subarray(i * size, Math.min(body.length, (i + 1) * size));
          const r = await this.client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body: chunk, ContentLength: chunk.length }));
          parts[i] = { PartNumber: i + 1, ETag: r.ETag };
        }
      };
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, worker));
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  /** Runs one operation: CLOSED after close, SDK errors mapped, tracked so close() can wait for it. */
  private run<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new BackendError('CLOSED', `blob store ${this.url} is closed`, { url: this.url, key }));
    // the bucket was not checked at open (no answer in time): every call, reads too, checks it first — a
    // slow store may answer late, and a list of a bucket never created is NoSuchBucket, not "no keys"
    const checked = this.bucketUnchecked ? this.checkBucketLate() : undefined;
    const p = (checked === undefined ? fn() : checked.then(fn)).catch((err: unknown) => {
      throw this.mapError(err, op, key);
    });
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  private notFound(key: string, cause?: unknown): BackendError {
    return new BackendError('NOT_FOUND', `no object ${key} in ${this.url}`, { key, url: this.url }, cause === undefined ? undefined : { cause });
  }

  private mapError(err: unknown, op: string, key: string): BackendError {
    if (err instanceof BackendError) return err;
    if (op !== 'open' && isNotFound(err) && (err as SdkError).name !== 'NoSuchBucket') return this.notFound(key, err);
    const e = err as SdkError & Error;
    const what = `${e?.name ?? 'Error'}${status(err) === undefined ? '' : ` (HTTP ${status(err)})`}: ${e?.message ?? String(err)}`;
    return new BackendError('BACKEND', `${op} ${key || '(bucket)'} on ${this.url} failed: ${what}`, { key, op, url: this.url, status: status(err), unreachable: isUnreachable(err) }, { cause: err });
  }
}

function toBuffer(a: Uint8Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function isKey(k: string): boolean {
  try {
    validateKey(k);
    return true;
  } catch {
    return false;
  }
}
