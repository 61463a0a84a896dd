/** Daemon logs on stderr: JSON lines (fit for journald) or plain text. Events go to stdout, not here. */
import type { LogFormat } from './events.js';

/** Severity of a log line. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

/** A small structured logger. */
export class Logger {
  constructor(private readonly format: LogFormat = 'json', private readonly debugOn = false) {}

  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    if (level === 'debug' && !this.debugOn) return;
    const line = this.format === 'json'
      ? JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields })
      : `flowgate: ${level === 'info' ? '' : `${level}: `}${msg}${Object.keys(fields).length ? ' ' + JSON.stringify(fields) : ''}`;
    process.stderr.write(line + '\n');
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
}
