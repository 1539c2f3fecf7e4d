import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from './create-test-app';
import { NODE, runCli } from './run-cli';

export const MAIN = join(process.cwd(), 'dist/src/main.js');

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  port: number;
  dataDir: string;
  /** the environment the server runs with (also points the CLI at its database) */
  env: NodeJS.ProcessEnv;
  /** everything the process wrote, stdout and stderr */
  output(): string;
  /** resolves with the exit code once the process has exited */
  exited: Promise<number | null>;
  /** kills the process if still running and removes its DATA_DIR (unless the caller gave it) */
  dispose(): Promise<void>;
}

/**
 * Starts the built server (dist/src/main.js) as its own process, the way `npm start` does: on DATABASE_URL when the
 * tests have one, else on an embedded database in a fresh DATA_DIR. Resolves once it logs `server listening`.
 */
export async function startServerProcess(extraEnv: NodeJS.ProcessEnv = {}, opts: { dataDir?: string } = {}): Promise<ServerProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'proxy-proc-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DATABASE_URL: process.env.DATABASE_URL ?? '',
    JWT_SECRET: TEST_JWT_SECRET,
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    LOG_LEVEL: 'info',
    ...extraEnv,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
  };
  const child = spawn(NODE, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const dispose = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${out}`)), 90_000);
    const look = () => {
      const m = /"msg":"server listening","port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', look);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${out}`));
    });
  }).catch(async (err: unknown) => {
    await dispose();
    throw err;
  });
  return { child, url: `http://127.0.0.1:${port}`, port, dataDir, env, output: () => out, exited, dispose };
}

/** An organization with an org-wide upstream key and a token, made with the CLI against the server's database. */
export async function cliOrg(server: ServerProcess, upstreamUrl: string): Promise<{ orgId: string; token: string }> {
  const env = { DATABASE_URL: server.env.DATABASE_URL, DATA_DIR: server.dataDir, JWT_SECRET: server.env.JWT_SECRET, ENCRYPTION_KEY: server.env.ENCRYPTION_KEY };
  const org = await runCli(['org', 'create', `proc-${Date.now()}-${Math.random().toString(36).slice(2)}`, '--json'], env);
  if (org.code !== 0) throw new Error(`org create failed: ${org.stderr}`);
  const key = await runCli(['key', 'create', org.json.id, 'sk-process-test-0001', '--base-url', upstreamUrl, '--json'], env);
  if (key.code !== 0) throw new Error(`key create failed: ${key.stderr}`);
  const jwt = await runCli(['jwt', 'create', '--org-id', org.json.id], env);
  if (jwt.code !== 0) throw new Error(`jwt create failed: ${jwt.stderr}`);
  return { orgId: org.json.id, token: jwt.stdout.trim() };
}
