/**
 * The mount configuration without mounting: sizes, HOST:PORT, defaults of DESIGN §1 (vPool = basename,
 * state /var/lib/vpoolfs/<vpool>, backend file://<state>/backend, router = hostname, DTL none),
 * flags over the config file, which changes apply live.
 */
import test from 'ava';
import os from 'node:os';
import { ConfigError, diffConfig, parseConfigText, parseHostPort, parseSize, resolveMount, validateConfig } from '../tools/daemon/config.js';

test('parseSize: bytes and binary units', (t) => {
  t.is(parseSize('4096'), 4096);
  t.is(parseSize('512M'), 512 * 2 ** 20);
  t.is(parseSize('10G'), 10 * 2 ** 30);
  t.is(parseSize('1TiB'), 2 ** 40);
  t.is(parseSize('64t'), 64 * 2 ** 40);
  for (const bad of ['', '10Q', '-1', '1.5G', 'G', '1 0G']) t.throws(() => parseSize(bad), { instanceOf: ConfigError }, bad);
});

test('parseHostPort', (t) => {
  t.deepEqual(parseHostPort('127.0.0.1:9464', 'k'), { host: '127.0.0.1', port: 9464 });
  t.deepEqual(parseHostPort('[::1]:0', 'k'), { host: '::1', port: 0 });
  t.deepEqual(parseHostPort('dtl-1.example:7000', 'k'), { host: 'dtl-1.example', port: 7000 });
  for (const bad of ['host', ':80', 'h:65536', 'h:x', 'a b:1']) t.throws(() => parseHostPort(bad, 'k'), { instanceOf: ConfigError }, bad);
});

test('defaults of DESIGN §1', (t) => {
  const r = resolveMount('/mnt/vpool', {}, {});
  t.like(r, { mountpoint: '/mnt/vpool', vpool: 'vpool', state: '/var/lib/vpoolfs/vpool', backend: 'file:///var/lib/vpoolfs/vpool/backend', router: os.hostname(), dtl: 'none' });
  const s = resolveMount('/srv/x/pool2/', {}, { state: '/data/p2' });
  t.like(s, { vpool: 'pool2', state: '/data/p2', backend: 'file:///data/p2/backend' });
});

test('flags win over the config file, which wins over the defaults', (t) => {
  const file = parseConfigText(JSON.stringify({ vpool: 'a', router: 'r1', backend: 'mem://x', writeCacheBytes: '1G', dtlServer: 'h1:1,h2:2' }), 'f.json');
  t.deepEqual(file.dtlServer, ['h1:1', 'h2:2']);
  t.is(file.writeCacheBytes, 2 ** 30);
  const r = resolveMount('/mnt/m', validateConfig({ vpool: 'b' }, 'flags'), file);
  t.like(r, { vpool: 'b', router: 'r1', backend: 'mem://x', state: '/var/lib/vpoolfs/b' });
});

test('validation names the key and what was expected', (t) => {
  const bad: [unknown, RegExp][] = [
    [{ scoClusters: 0 }, /scoClusters: expected a positive integer/],
    [{ tlogScos: 1.5 }, /tlogScos: expected a positive integer/],
    [{ readCacheBytes: 'lots' }, /readCacheBytes: expected a size/],
    [{ backend: 'file://relative/dir' }, /absolute directory/],
    [{ backend: 's3:///prefix' }, /needs a bucket/],
    [{ router: '' }, /router: expected a non-empty string/],
    [{ schedule: 'hourly' }, /schedule: expected an object/],
    [{ dtlServer: [] }, /dtlServer: expected HOST:PORT/],
    [{ vpool: '../x' }, /vPool name/],
    [{ nope: 1 }, /unknown key "nope"/],
  ];
  for (const [obj, re] of bad) t.throws(() => validateConfig(obj, 'c.json'), { instanceOf: ConfigError, message: re }, JSON.stringify(obj));
  t.notThrows(() => validateConfig({ backend: 's3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true' }, 'c.json'));
});

test('diffConfig: logLevel and the cache sizes are live, everything else needs a restart', (t) => {
  t.deepEqual(diffConfig({ logLevel: 'info', writeCacheBytes: 1 }, { logLevel: 'debug', writeCacheBytes: 2, tlogScos: 4 }), {
    live: ['logLevel', 'writeCacheBytes'],
    restart: ['tlogScos'],
  });
  t.deepEqual(diffConfig({ vpool: 'a' }, { vpool: 'a' }), { live: [], restart: [] });
});
