/**
 * Watches the --config file (chokidar): on a change it is read and validated again; live keys
 * (logLevel, the cache sizes) apply at once, every other changed key is logged as needing a restart. A file that no
 * longer parses is logged and ignored: the running mount keeps its settings.
 */
import { watch } from 'chokidar';
import { logger, setLogLevel } from '../../util/log.js';
import { DEFAULT_READ_CACHE_BYTES, DEFAULT_WRITE_CACHE_BYTES, type VPool } from '../../volume/types.js';
import { diffConfig, loadConfigFile, type MountConfig } from './config.js';

const log = logger('config');

export interface ConfigWatcher {
  close(): Promise<void>;
}

/** A key removed from the file falls back to the vPool's default. */
const DEFAULT_LIMITS = { writeCacheBytes: DEFAULT_WRITE_CACHE_BYTES, readCacheBytes: DEFAULT_READ_CACHE_BYTES };

export function watchConfig(file: string, initial: MountConfig, vpool: Pick<VPool, 'setCacheLimits' | 'scrub'>, onSchedule?: (s: MountConfig['schedule']) => void): ConfigWatcher {
  let current = initial;
  const watcher = watch(file, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 50 } });
  const reload = async () => {
    let next: MountConfig;
    try {
      next = await loadConfigFile(file);
    } catch (err) {
      log.warn('config change ignored: the file is not valid', { file, error: (err as Error).message });
      return;
    }
    const { live, restart } = diffConfig(current, next);
    for (const key of live) {
      if (key === 'logLevel') {
        setLogLevel(next.logLevel ?? 'info');
        log.info('config: logLevel applied', { file, logLevel: next.logLevel ?? 'info' });
      } else if (key === 'schedule') {
        onSchedule?.(next.schedule);
        log.info('config: schedule applied', { file, schedule: next.schedule ?? 'defaults' });
      } else if (key === 'scrub') {
        vpool.scrub.setLimits(next.scrub ?? {});
        log.info('config: scrub limits applied (to scrubs that start from now on)', { file, scrub: next.scrub ?? 'defaults' });
      } else if (key === 'writeCacheBytes' || key === 'readCacheBytes') {
        const value = next[key] ?? DEFAULT_LIMITS[key];
        vpool.setCacheLimits({ [key]: value });
        log.info(`config: ${key} applied`, { file, [key]: value });
      }
    }
    for (const key of restart) log.warn(`config: ${key} changed; it takes effect after a restart`, { file, key, value: next[key] });
    current = next;
  };
  watcher.on('change', () => void reload());
  watcher.on('add', () => void reload());
  // a change made before chokidar finished setting up its watch raises no event (the mount is ready within
  // milliseconds on the kernel engine): read the file once more when the watch stands; unchanged = no-op
  watcher.on('ready', () => void reload());
  watcher.on('error', (err) => log.warn('config watch failed', { file, error: String(err) }));
  return { close: () => watcher.close() };
}
