/**
 * Issue 15's takeover proof with three routers on Ceph radosgw, the faults other than kill -9: the owner's
 * network cut, and SIGSTOP then SIGCONT of the owner (the scenarios: helpers/three-router-faults.ts; the set-up
 * and kill -9: cluster-netns-s3.test.ts). The same scenarios on file://: cluster-netns-file-faults.test.ts.
 * radosgw listens on the bridge's address too (helpers/s3-server.ts `alsoOn`), so the routers in their
 * namespaces reach it; the network cut cuts A off from it as well.
 */
import { fuseTest } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { useS3Server } from './helpers/s3-server.js';
import { networkCut, stopAndResume } from './helpers/three-router-faults.js';

const test = fuseTest();
const bridge = useBridge();
const s3 = useS3Server('cluster3f', { alsoOn: () => bridge.hostIp });

test('three routers on radosgw: the owner\'s network cut under its writer (sync DTL): a follower takes over with every write acknowledged before the cut', (t) =>
  networkCut(t, bridge, { inNs: s3.urlOn(bridge.hostIp, 'cluster3', 'cut') }));

test('three routers on radosgw: SIGSTOP of the owner under its writer (sync DTL): a follower takes over; the owner resumed is fenced and changes nothing', (t) =>
  stopAndResume(t, bridge, { inNs: s3.urlOn(bridge.hostIp, 'cluster3', 'stop'), onHost: s3.url('cluster3', 'stop') }));
