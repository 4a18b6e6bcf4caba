/**
 * Structured logging for every layer (winston). One root logger; each module takes a child with its
 * `component` so that every line says where it came from. Level: VPOOLFS_LOG_LEVEL (default `info`,
 * `warn` under tests so that test output stays readable), changeable live with setLogLevel().
 */
import winston from 'winston';

const defaultLevel = process.env.VPOOLFS_LOG_LEVEL ?? (process.env.AVA_WORKER_ID !== undefined || process.env.NODE_ENV === 'test' ? 'warn' : 'info');

export const rootLogger = winston.createLogger({
  level: defaultLevel,
  format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json()),
  transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] })],
});

export type Logger = winston.Logger;

export function logger(component: string): Logger {
  return rootLogger.child({ component });
}

export function setLogLevel(level: string): void {
  rootLogger.level = level;
  for (const t of rootLogger.transports) t.level = level;
}
