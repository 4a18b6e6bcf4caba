/**
 * Ownership per vDisk, the volume and registry halves, on a file:// backend with a real etcd: the scenarios of
 * helpers/vdisk-delegation-scenarios.ts (docs/cluster.md, "Ownership per vDisk"). On radosgw:
 * vdisk-delegation-s3.test.ts.
 */
import test from 'ava';
import { gateOutage, handoverAndBack, zombie } from './helpers/vdisk-delegation-scenarios.js';

test('a vDisk handed to another router and back: both vDisks written at once on two routers, every byte; the records, the fences, the refusals', (t) => handoverAndBack(t));

test('zombie: uploads of a delegate past its gate land after the vPool\'s owner took the vDisk back and wrote: they change nothing it serves; the delegate answers FENCED', (t) => zombie(t));

test('the delegate\'s gate: writes wait while etcd does not answer (never unconfirmed) and go on when it is back; a return of the vDisk fences it at its next confirmation', (t) => gateOutage(t));
