import { LoggerService } from '@nestjs/common';
import type { LogLevel } from '../config/app-config';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

// Anything shaped like an API key or a JWT is masked before a line is written, whatever logged it.
const SECRET_PATTERNS = [/sk-[A-Za-z0-9_\-]{6,}/g, /eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*/g, /Bearer\s+[^\s"']+/gi];

export function redact(text: string): string {
  let out = text;
  for (const p of SECRET_PATTERNS) out = out.replace(p, '[redacted]');
  return out;
}

export type LogSink = (line: string) => void;

/** Structured JSON logs, one object per line. */
export class JsonLogger implements LoggerService {
  private readonly min: number;

  constructor(
    level: LogLevel,
    private readonly sink: LogSink = (line) => process.stdout.write(line + '\n'),
  ) {
    this.min = RANK[level];
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.min;
  }

  write(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (RANK[level] < this.min) return;
    const line = JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields }, (_k, v) =>
      v instanceof Error ? { name: v.name, message: v.message } : v,
    );
    this.sink(redact(line));
  }

  private nest(level: LogLevel, message: unknown, params: unknown[]): void {
    if (RANK[level] < this.min) return;
    const context = typeof params[params.length - 1] === 'string' ? (params[params.length - 1] as string) : undefined;
    const msg = message instanceof Error ? message.message : typeof message === 'string' ? message : JSON.stringify(message);
    this.write(level, msg, context ? { context } : {});
  }

  // Nest's `log` is the framework's own chatter (modules initialized, every route mapped, "started"): useful when
  // debugging, noise before the start-up summary otherwise. Our code writes its info lines with write().
  log(message: unknown, ...params: unknown[]): void {
    this.nest('debug', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.nest('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.nest('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.nest('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.nest('debug', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.nest('error', message, params);
  }
}
