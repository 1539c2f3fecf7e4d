import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/app-config';
import { createTestApp, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../support/create-test-app';
import { createKey, createOrg } from '../support/factories';
import { startServerProcess } from '../support/server-process';

const NODE = join(process.cwd(), 'node_modules/.bin/node');
const MAIN = join(process.cwd(), 'dist/src/main.js');

function startMain(env: NodeJS.ProcessEnv) {
  return spawnSync(NODE, [MAIN], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

const SYSTEM_NODE = '/usr/bin/node';
const systemNodeMajor = existsSync(SYSTEM_NODE)
  ? Number(spawnSync(SYSTEM_NODE, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.split('.')[0])
  : undefined;

describe.skipIf(systemNodeMajor === undefined || systemNodeMajor >= 24)('the built entry points on an older Node', () => {
  it.each([
    ['the server', MAIN, []],
    ['the CLI', join(process.cwd(), 'dist/src/cli.js'), ['org', 'list']],
  ])('%s says which Node it needs, in one line, instead of crashing', (_name, entry, args) => {
    const run = spawnSync(SYSTEM_NODE, [entry, ...args], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^openai-proxy: Node 2\d\.\d+\.\d+ is too old; Node 24 is required\./);
  });
});

describe('configuration is validated at start', () => {
  const external = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };

  it.each([
    ['JWT_SECRET missing', { ...external, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY }, /JWT_SECRET is required/],
    ['JWT_SECRET too weak', { ...external, JWT_SECRET: 'short', ENCRYPTION_KEY: TEST_ENCRYPTION_KEY }, /JWT_SECRET is too weak/],
    ['ENCRYPTION_KEY missing', { ...external, JWT_SECRET: TEST_JWT_SECRET }, /ENCRYPTION_KEY is required/],
    ['ENCRYPTION_KEY not 32 bytes', { ...external, JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: 'abcd' }, /ENCRYPTION_KEY must be 32 bytes/],
    ['PORT not a number', { ...external, JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, PORT: 'eighty' }, /PORT must be a whole number/],
  ])('%s: the server stops with a one-line reason', (_name, env, reason) => {
    const run = startMain(env);
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(reason);
    expect(run.stdout).toBe('');
  });

  it('accepts the master key as hex or base64', () => {
    const raw = Buffer.from(TEST_ENCRYPTION_KEY, 'hex');
    const base = { DATABASE_URL: 'postgres://x@127.0.0.1/db', JWT_SECRET: TEST_JWT_SECRET };
    expect(loadConfig({ ...base, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY }).encryptionKey.equals(raw)).toBe(true);
    expect(loadConfig({ ...base, ENCRYPTION_KEY: raw.toString('base64') }).encryptionKey.equals(raw)).toBe(true);
    expect(() => loadConfig({ ...base, ENCRYPTION_KEY: Buffer.alloc(16).toString('base64') })).toThrow(ConfigError);
  });

  it('embedded mode generates development secrets once and keeps them in DATA_DIR', () => {
    const dir = mkdtempSync(join(tmpdir(), 'proxy-cfg-'));
    try {
      const a = loadConfig({ DATA_DIR: dir });
      const b = loadConfig({ DATA_DIR: dir });
      expect(a.jwtSecret.length).toBeGreaterThanOrEqual(32);
      expect(b.jwtSecret).toBe(a.jwtSecret);
      expect(b.encryptionKey.equals(a.encryptionKey)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a wrong master key makes the server refuse to start instead of failing per request', async () => {
    const app = await createTestApp();
    const { orgId } = await createOrg(app);
    await createKey(app, orgId, 'sk-master-key-check-0001');
    const dbUrl = app.env.DATABASE_URL;
    await app.close();
    if (!dbUrl) return; // the embedded database of that app is gone with its temp DATA_DIR; covered with PostgreSQL in CI
    const wrong = 'f'.repeat(64);
    await expect(createTestApp({ ENCRYPTION_KEY: wrong })).rejects.toThrow(/ENCRYPTION_KEY cannot decrypt the stored API keys/);
    // during a rotation the previous key keeps the server readable
    const rotating = await createTestApp({ ENCRYPTION_KEY: wrong, ENCRYPTION_KEY_PREVIOUS: TEST_ENCRYPTION_KEY });
    await rotating.close();
  });

  it('the server loads its token counter before it listens: no call waits for it (it held the event loop ~150 ms)', async () => {
    const server = await startServerProcess();
    try {
      const line = server.output().split('\n').find((l) => l.includes('"msg":"server listening"'));
      const loadMs = (JSON.parse(line!) as { token_counter_load_ms?: unknown }).token_counter_load_ms;
      expect(typeof loadMs).toBe('number');
      expect(loadMs as number).toBeGreaterThan(0);
    } finally {
      await server.dispose();
    }
  });

  it('SIGTERM shuts the server down gracefully: exit 0, embedded database closed and unlocked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proxy-term-'));
    const port = 20000 + Math.floor(Math.random() * 30000);
    const child = spawn(NODE, [MAIN], { env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dir, LOG_LEVEL: 'warn' } });
    try {
      let healthy = false;
      for (let i = 0; i < 120 && !healthy; i++) {
        healthy = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
        if (!healthy) await new Promise((r) => setTimeout(r, 250));
      }
      expect(healthy).toBe(true);
      expect(existsSync(join(dir, 'embedded-db.lock'))).toBe(true);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(join(dir, 'embedded-db.lock'))).toBe(false);
      expect(existsSync(join(dir, 'embedded-db.json'))).toBe(false);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
