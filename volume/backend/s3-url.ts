/**
 * Parsing of `s3://bucket/prefix?endpoint=URL&region=R&forcePathStyle=true` backend URLs into the
 * options of S3BlobStore (./s3-store.ts). Besides the three keys of the contract, tuning keys are
 * accepted: `maxSockets` (keep-alive connection pool size, default 32), `partSize` (multipart part size in
 * bytes, default 8 MiB, at least 5 MiB), `multipartThreshold` (objects of this size or more are uploaded in
 * parts, default 16 MiB) and `maxAttempts` (SDK attempts per request, default 4). Credentials never go
 * into the URL: they come from the standard AWS environment variables (or the SDK's default chain).
 */
import { BackendError } from '../../util/errors.js';

export interface S3Options {
  bucket: string;
  /** Prepended to every key: '' or a `/`-terminated prefix. */
  prefix: string;
  /** e.g. http://127.0.0.1:7480; undefined for AWS itself. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  maxSockets: number;
  partSize: number;
  multipartThreshold: number;
  maxAttempts: number;
  /** The URL without anything secret, as BlobStore.url. */
  url: string;
}

const MIN_PART = 5 * 2 ** 20;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX = /^[A-Za-z0-9._/-]*$/;
const KNOWN = new Set(['endpoint', 'region', 'forcePathStyle', 'maxSockets', 'partSize', 'multipartThreshold', 'maxAttempts']);

function invalid(message: string, context: Record<string, unknown> = {}): BackendError {
  return new BackendError('INVALID', `s3 backend URL: ${message}`, context);
}

function intParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null) return dflt;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(v) || v < min || v > max) throw invalid(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`, { [name]: raw });
  return v;
}

/** Parses an s3:// URL; BackendError INVALID (never echoing credentials) when it is malformed. */
export function parseS3Url(raw: string): S3Options {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalid('not a valid URL (expected s3://bucket/prefix?endpoint=…&region=…)');
  }
  if (u.protocol !== 's3:') throw invalid(`not an s3:// URL`);
  if (u.username !== '' || u.password !== '') {
    throw invalid('credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)');
  }
  const bucket = u.hostname;
  if (!BUCKET.test(bucket)) throw invalid(`bucket name ${JSON.stringify(bucket)} is not a valid S3 bucket name`, { bucket });
  if (u.port !== '') throw invalid('a port belongs in endpoint=, not after the bucket name', { bucket });
  let prefix = decodeURIComponent(u.pathname).replace(/^\/+/, '');
  if (!PREFIX.test(prefix) || prefix.split('/').some((s, i, all) => (s === '' && i < all.length - 1) || s === '.' || s === '..')) {
    throw invalid(`prefix ${JSON.stringify(prefix)}: only A-Z a-z 0-9 . _ / - in non-empty segments`, { prefix });
  }
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  const q = u.searchParams;
  for (const k of q.keys()) if (!KNOWN.has(k)) throw invalid(`unknown parameter ${JSON.stringify(k)}; known: ${[...KNOWN].join(', ')}`, { parameter: k });
  const endpoint = q.get('endpoint') ?? undefined;
  if (endpoint !== undefined) {
    let e: URL;
    try {
      e = new URL(endpoint);
    } catch {
      throw invalid(`endpoint ${JSON.stringify(endpoint)} is not a URL`);
    }
    if (e.protocol !== 'http:' && e.protocol !== 'https:') throw invalid('endpoint must be http:// or https://');
    if (e.username !== '' || e.password !== '') throw invalid('credentials do not belong in the endpoint URL');
  }
  const fps = q.get('forcePathStyle');
  if (fps !== null && fps !== 'true' && fps !== 'false') throw invalid(`forcePathStyle must be true or false, got ${JSON.stringify(fps)}`);
  const region = q.get('region') ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const partSize = intParam(q, 'partSize', 8 * 2 ** 20, MIN_PART, 5 * 2 ** 30);
  const multipartThreshold = intParam(q, 'multipartThreshold', 16 * 2 ** 20, MIN_PART, 5 * 2 ** 30);
  return {
    bucket,
    prefix,
    endpoint,
    region,
    forcePathStyle: fps === 'true',
    maxSockets: intParam(q, 'maxSockets', 32, 1, 1024),
    partSize,
    multipartThreshold,
    maxAttempts: intParam(q, 'maxAttempts', 4, 1, 20),
    url: `s3://${bucket}/${prefix}${q.size > 0 ? `?${q.toString()}` : ''}`,
  };
}
