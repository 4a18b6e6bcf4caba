/**
 * The registry's zombie on S3 (helpers/registry-zombie.ts), against a real Ceph radosgw started for this
 * file: a router paused past its registry lease, a takeover through the registry, the zombie resumed cut off
 * from etcd ships late uploads to S3; none changes what the new owner serves (on it, after its restart, and on
 * a third router rebuilding from S3); the zombie is fenced when etcd is back.
 */
import { fuseTest } from './helpers/mount.js';
import { useS3Server } from './helpers/s3-server.js';
import { registryZombie } from './helpers/registry-zombie.js';

const test = fuseTest();
const s3 = useS3Server('registry');

test('S3 zombie: a router paused past its registry lease and resumed after a takeover changes nothing the new owner serves', (t) => registryZombie(t, () => s3.url('registry', 'vp')));
