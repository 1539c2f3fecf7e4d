import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestApp } from './create-test-app';

export const NODE = join(process.cwd(), 'node_modules/.bin/node');
export const CLI = join(process.cwd(), 'dist/src/cli.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs) */
  json: any;
}

// An embedded database accepts few connections, and each CLI run opens a few: keep the runs in flight bounded.
const MAX_PARALLEL = 3;
let running = 0;
const waiting: (() => void)[] = [];

async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** The environment that points the CLI at the same database (and secrets) as a running test server. */
export function cliEnvFor(app: TestApp): NodeJS.ProcessEnv {
  return {
    DATABASE_URL: app.env.DATABASE_URL ?? '',
    DATA_DIR: app.dataDir,
    JWT_SECRET: app.env.JWT_SECRET,
    ENCRYPTION_KEY: app.env.ENCRYPTION_KEY,
  };
}

/** Runs the built CLI (dist/src/cli.js) the way a user does, with only the given environment. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, opts: { stdin?: string } = {}): Promise<CliResult> {
  return slot(
    () =>
      new Promise<CliResult>((resolve, reject) => {
        const child = spawn(NODE, [CLI, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
        child.on('error', reject);
        child.on('close', (code) => {
          clearTimeout(timer);
          let json: any;
          try {
            json = JSON.parse(stdout);
          } catch {
            json = undefined;
          }
          resolve({ code, stdout, stderr, json });
        });
        child.stdin.end(opts.stdin ?? '');
      }),
  );
}
