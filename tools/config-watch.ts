/**
 * Watches the --config file (chokidar): on a change it is read and validated again; live keys
 * (logLevel) apply at once, every other changed key is logged as needing a restart. A file that no
 * longer parses is logged and ignored: the running mount keeps its settings.
 */
import { watch } from 'chokidar';
import { logger, setLogLevel } from '../util/log.js';
import { diffConfig, loadConfigFile, type MountConfig } from './config.js';

const log = logger('config');

export interface ConfigWatcher {
  close(): Promise<void>;
}

export function watchConfig(file: string, initial: MountConfig): ConfigWatcher {
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
      }
    }
    for (const key of restart) log.warn(`config: ${key} changed; it takes effect after a restart`, { file, key, value: next[key] });
    current = next;
  };
  watcher.on('change', () => void reload());
  watcher.on('add', () => void reload());
  watcher.on('error', (err) => log.warn('config watch failed', { file, error: String(err) }));
  return { close: () => watcher.close() };
}
