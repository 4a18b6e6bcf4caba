/**
 * Ownership per vDisk on S3 (a real radosgw, helpers/s3-server.ts, and a real etcd): the handover and its return,
 * and the zombie — a delegate's TLog PUT in flight lands after the vPool's owner took the vDisk back; the
 * owner-tag fence keeps it out of what anyone serves, with no conditional write (docs/cluster.md).
 */
import test from 'ava';
import { useS3Server } from './helpers/s3-server.js';
import { handoverAndBack, zombie } from './helpers/vdisk-delegation-scenarios.js';

const s3 = useS3Server('vdisk-delegation');

test('S3: a vDisk handed to another router and back: every byte, the records, the fences', (t) => handoverAndBack(t, s3.url('vdisk-delegation', 'handover')));

test('S3 zombie: a delegate\'s late upload changes nothing the vPool\'s owner serves after taking the vDisk back', (t) => zombie(t, s3.url('vdisk-delegation', 'zombie')));
