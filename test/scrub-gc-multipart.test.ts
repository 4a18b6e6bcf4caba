/**
 * `vpoolfs gc --backend s3://… [--dry-run] [--older-than H]` on a real S3 server (Ceph radosgw): the
 * multipart uploads a crash left unfinished (created, a part stored, never completed — what a daemon killed
 * in the middle of a large put leaves) are listed, then aborted; a young one is left alone by default (it may
 * be in flight), an upload outside the backend's prefix and the backend's objects are never touched.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { openBlobStore } from '../volume/backend/index.js';
import { CLI, ok, q } from './helpers/mount.js';
import { emptyStore, useS3Server } from './helpers/s3-server.js';

const s3 = useS3Server('gc-multipart');

test('gc --backend lists and aborts the incomplete multipart uploads under the prefix, and nothing else', async (t) => {
  t.timeout(180_000);
  const bucket = 'gc-multipart';
  const url = s3.url(bucket, 'pool/');
  t.teardown(() => emptyStore(url).catch(() => undefined));
  const store = await openBlobStore(url); // creates the bucket
  const kept = randomBytes(4096);
  await store.put('vdisks/x/sco/00000001', kept);
  const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true });
  t.teardown(() => client.destroy());
  const half = async (key: string): Promise<string> => {
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: randomBytes(5 * 2 ** 20) }));
    return UploadId!;
  };
  const cut = await half('pool/vdisks/x/sco/00000002');
  const outside = await half('other/thing');
  const uploads = async (prefix: string): Promise<string[]> =>
    ((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }))).Uploads ?? []).map((u) => u.UploadId!);
  const cli = (args: string): Promise<string> => ok(t, `node ${q(CLI)} gc --backend ${q(url)} ${args}`, 60_000);

  t.regex(await cli('--dry-run'), /^0 incomplete multipart upload\(s\) would be aborted$/m, 'by default an upload started less than an hour ago is left alone');
  const listed = await cli('--dry-run --older-than 0');
  t.regex(listed, new RegExp(`would abort multipart upload of vdisks/x/sco/00000002 +\\(id ${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, started .*never completed\\)`), 'the dry run lists the cut upload');
  t.notRegex(listed, /other\/thing/, 'nothing outside the prefix');
  t.deepEqual(await uploads('pool/'), [cut], 'a dry run aborts nothing');

  const out = JSON.parse((await cli('--older-than 0 --json')).trim()) as { dryRun: boolean; uploads: Array<{ key: string; uploadId: string }> };
  t.deepEqual(out.uploads.map((u) => [u.key, u.uploadId]), [['vdisks/x/sco/00000002', cut]], '--json says what was aborted');
  t.deepEqual(await uploads('pool/'), [], 'the cut upload is gone');
  t.deepEqual(await uploads('other/'), [outside], 'the upload outside the prefix is still there');
  t.true((await store.get('vdisks/x/sco/00000001')).equals(kept), "the backend's objects are untouched");
  t.regex(await cli('--dry-run --older-than 0'), /^0 incomplete multipart upload\(s\) would be aborted$/m, 'a second gc finds nothing');
  await store.close();
});
