/**
 * Unit tests of the NBD server's pure parts against golden bytes written out from the protocol spec
 * (nbd/wire.ts), the byte queue, export names, listen addresses and the `nbd` config key. The server as a
 * whole is tested with real clients in the other nbd-*.test.ts files.
 */
import test from 'ava';
import { ByteQueue } from '../nbd/byte-queue.js';
import { exportPath } from '../nbd/export.js';
import { checkNbdListen, parseNbdAddress } from '../nbd/address.js';
import { TFLAG } from '../nbd/protocol.js';
import {
  blockStatusChunk, decodeOptionHeader, decodeRequest, encodeRequest, errorChunk, exportNameReply, greeting, infoBlockSize, infoExport,
  noneChunk, optionError, optionReply, readChunk, readSimple, repMetaContext, repServer, simpleReply,
} from '../nbd/wire.js';
import { ConfigError, validateConfig } from '../tools/daemon/config.js';
import { resolveFlags } from '../tools/commands/mount-cmd.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const REQ = hex('25609513 0001 0001 0102030405060708 0000000000100000 00001000');

test('handshake: greeting, option header and replies', (t) => {
  t.deepEqual(greeting(), hex('4e42444d41474943 49484156454f5054 0003'));
  t.deepEqual(decodeOptionHeader(hex('49484156454f5054 00000007 0000000a')), { magicOk: true, option: 7, length: 10 });
  t.false(decodeOptionHeader(hex('49484156454f5055 00000007 0000000a')).magicOk);
  t.deepEqual(optionReply(7, 1), hex('0003e889045565a9 00000007 00000001 00000000'));
  t.deepEqual(optionError(99, 2 ** 31 + 1, 'no'), hex('0003e889045565a9 00000063 80000001 00000002 6e6f'));
  t.deepEqual(infoExport(16 * 2 ** 20, 0x14d), hex('0000 0000000001000000 014d'));
  t.deepEqual(infoBlockSize(1, 4096, 32 * 2 ** 20), hex('0003 00000001 00001000 02000000'));
  t.deepEqual(repServer('a/b'), hex('00000003 612f62'));
  t.deepEqual(repMetaContext(1, 'base:allocation'), Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]));
  t.deepEqual(exportNameReply(4096, 3, true), hex('0000000000001000 0003'));
  t.is(exportNameReply(4096, 3, false).length, 134);
  t.is(TFLAG.CAN_MULTI_CONN, 0x100);
});

test('requests: decode, and encode back', (t) => {
  const r = decodeRequest(REQ);
  t.deepEqual(r, { magicOk: true, flags: 1, type: 1, cookieHi: 0x01020304, cookieLo: 0x05060708, offset: 2 ** 20, length: 4096 });
  t.deepEqual(encodeRequest({ flags: 1, type: 1, cookie: 0x0102030405060708n, offset: 2 ** 20, length: 4096 }), REQ);
  t.is(decodeRequest(hex('25609513 0000 0000 0000000000000000 0020000000000000 00000001')).offset, Infinity, 'past 2^53');
  t.is(decodeRequest(hex('25609513 0000 0000 0000000000000000 001fffffffffffff 00000001')).offset, 2 ** 53 - 1);
  t.false(decodeRequest(hex('25609514 0000 0000 0000000000000000 0000000000000000 00000000')).magicOk);
  t.is(decodeRequest(Buffer.concat([hex('ffff'), REQ]), 2).length, 4096, 'at an offset');
});

test('replies: simple, and structured chunks (data, none, error, block status)', (t) => {
  const r = decodeRequest(REQ);
  t.deepEqual(simpleReply(22, r), hex('67446698 00000016 0102030405060708'));
  const s = readSimple(r, 4);
  s.data.write('abcd');
  t.deepEqual(s.frame, hex('67446698 00000000 0102030405060708 61626364'));
  const c = readChunk(r, 4);
  c.data.write('abcd');
  t.deepEqual(c.frame, hex('668e33ef 0001 0001 0102030405060708 0000000c 0000000000100000 61626364'));
  t.deepEqual(noneChunk(r), hex('668e33ef 0001 0000 0102030405060708 00000000'));
  t.deepEqual(errorChunk(r, 22, 'bad'), hex('668e33ef 0001 8001 0102030405060708 00000009 00000016 0003 626164'));
  t.deepEqual(blockStatusChunk(r, 1, [{ length: 4096, flags: 3 }, { length: 8192, flags: 0 }], true),
    hex('668e33ef 0001 0005 0102030405060708 00000014 00000001 00001000 00000003 00002000 00000000'));
  t.deepEqual(blockStatusChunk(r, 1, [], false).subarray(4, 6), hex('0000'), 'not DONE');
  const big = { ...r, offset: 2 ** 40 + 5 };
  t.deepEqual(readChunk(big, 0).frame.subarray(20, 28), hex('0000010000000005'));
});

test('ByteQueue: views within a chunk, copies across chunks, skip', (t) => {
  const q = new ByteQueue();
  q.push(Buffer.from('abc'));
  q.push(Buffer.alloc(0));
  q.push(Buffer.from('defgh'));
  t.is(q.length, 8);
  t.is(q.take(9), undefined);
  t.is(q.take(2)!.toString(), 'ab');
  t.is(q.take(3)!.toString(), 'cde', 'across chunks');
  t.is(q.skip(1), 1);
  t.is(q.take(2)!.toString(), 'gh');
  t.is(q.length, 0);
  t.is(q.take(0)!.length, 0);
  t.is(q.skip(5), 0);
});

test('export names are vPool paths without . or ..', (t) => {
  t.is(exportPath('vms/web/root.img'), '/vms/web/root.img');
  t.is(exportPath('/vms//a.img/'), '/vms/a.img');
  for (const bad of ['', '/', 'a/../b', './a', 'a\0b']) t.throws(() => exportPath(bad), undefined, JSON.stringify(bad));
});

test('listen addresses: unix:/PATH or HOST:PORT; TCP off loopback only with TLS', (t) => {
  t.deepEqual(parseNbdAddress('unix:/run/vpoolfs/vp.sock', 'k'), { kind: 'unix', path: '/run/vpoolfs/vp.sock', text: 'unix:/run/vpoolfs/vp.sock' });
  t.deepEqual(parseNbdAddress('[::1]:10809', 'k'), { kind: 'tcp', host: '::1', port: 10809, text: '[::1]:10809' });
  for (const bad of ['unix:rel.sock', 'host', 'host:99999', ':1']) t.throws(() => parseNbdAddress(bad, 'k'), undefined, bad);
  const loop = ['127.0.0.1:10809', 'localhost:1', '[::1]:2'].map((a) => parseNbdAddress(a, 'k'));
  t.notThrows(() => checkNbdListen(loop, false, 'k'));
  const open = [parseNbdAddress('0.0.0.0:10809', 'k')];
  t.throws(() => checkNbdListen(open, false, '--nbd'), { message: /refusing to serve NBD on 0.0.0.0:10809 without TLS/ });
  t.notThrows(() => checkNbdListen(open, true, '--nbd'));
});

test('config: the nbd key and its flags', async (t) => {
  t.deepEqual(validateConfig({ nbd: 'unix:/a.sock, 127.0.0.1:10809' }, 'flags').nbd, ['unix:/a.sock', '127.0.0.1:10809']);
  t.deepEqual(validateConfig({ nbd: ['unix:/a.sock'] }, 'f.json').nbd, ['unix:/a.sock']);
  t.throws(() => validateConfig({ nbd: 'nowhere' }, 'f.json'), { instanceOf: ConfigError, message: /f.json: nbd: expected unix:\/PATH or HOST:PORT/ });
  await t.throwsAsync(resolveFlags('/tmp/vp', { nbd: ['0.0.0.0:10809'] }), { instanceOf: ConfigError, message: /without TLS/ });
  await t.throwsAsync(resolveFlags('/tmp/vp', { nbd: ['127.0.0.1:1'], nbdTlsCert: '/c.pem' }), { instanceOf: ConfigError, message: /go together/ });
  await t.notThrowsAsync(resolveFlags('/tmp/vp', { nbd: ['0.0.0.0:10809'], nbdTlsCert: '/c.pem', nbdTlsKey: '/k.pem' }));
});
