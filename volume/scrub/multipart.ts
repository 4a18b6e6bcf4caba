/**
 * Half-done S3 multipart uploads (docs/scrubbing.md, "gc"): a put of a large object (a SCO) is a multipart
 * upload (volume/backend/s3-store.ts); a daemon killed between its parts and its completion leaves the parts
 * stored, billed and invisible to a listing of objects. `vpoolfs gc --backend s3://…` lists the incomplete
 * uploads under the backend's prefix that started more than `olderThanMs` ago (an upload in flight is
 * seconds old) and aborts them (with --dry-run: lists only). Nothing else is touched: an aborted upload was
 * never an object, so no reader can miss it.
 *
 * It talks S3 directly (its own client, from the same URL and the same AWS environment variables as the
 * store), because the BlobStore seam has no notion of an upload.
 */
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { parseS3Url } from '../backend/s3-url.js';

export interface PendingUpload {
  /** The key in the backend (the URL's prefix removed). */
  key: string;
  uploadId: string;
  /** When it was started (ms since the epoch; NaN if the server did not say). */
  initiated: number;
}

function clientFor(url: string): { client: S3Client; bucket: string; prefix: string } {
  const o = parseS3Url(url);
  const env = process.env;
  const client = new S3Client({
    region: o.region,
    endpoint: o.endpoint,
    forcePathStyle: o.forcePathStyle,
    maxAttempts: o.maxAttempts,
    ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined } }
      : {}),
  });
  return { client, bucket: o.bucket, prefix: o.prefix };
}

/** The incomplete multipart uploads under the URL's prefix that started before `now − olderThanMs`. */
export async function incompleteUploads(url: string, olderThanMs: number, now = Date.now()): Promise<PendingUpload[]> {
  const { client, bucket, prefix } = clientFor(url);
  try {
    const out: PendingUpload[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: idMarker }));
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        const initiated = u.Initiated?.getTime() ?? NaN;
        // an upload of unknown age is left alone: it may be in flight
        if (!(now - initiated >= olderThanMs)) continue;
        out.push({ key: u.Key.slice(prefix.length), uploadId: u.UploadId, initiated });
      }
      if (page.IsTruncated !== true) break;
      keyMarker = page.NextKeyMarker;
      idMarker = page.NextUploadIdMarker;
    }
    return out;
  } finally {
    client.destroy();
  }
}

/** Aborts `uploads` (from incompleteUploads of the same URL); an upload already gone counts as aborted. */
export async function abortUploads(url: string, uploads: PendingUpload[]): Promise<number> {
  const { client, bucket, prefix } = clientFor(url);
  try {
    let n = 0;
    for (const u of uploads) {
      try {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: prefix + u.key, UploadId: u.uploadId }));
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchUpload') throw err;
      }
      n++;
    }
    return n;
  } finally {
    client.destroy();
  }
}
