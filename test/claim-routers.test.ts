/**
 * Two routers on one file:// backend, real daemons (the scenarios: helpers/claim-scenarios.ts): the second
 * is refused naming the holder, takes over after a kill -9 once the lease expired, or at once with --force;
 * a zombie (SIGSTOP, takeover, SIGCONT) changes nothing the new holder serves.
 */
import path from 'node:path';
import { fuseTest } from './helpers/mount.js';
import { refusalAndTakeover, zombie } from './helpers/claim-scenarios.js';

const test = fuseTest();
const fileBackend = (root: string) => `file://${path.join(root, 'backend')}`;

test('a second router is refused naming the holder; after kill -9 it takes over once the lease expired; --force takes over at once', (t) => refusalAndTakeover(t, fileBackend));

test('zombie: a router paused and resumed after a takeover changes nothing the new holder serves', (t) => zombie(t, fileBackend));
