import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startServerProcess } from '../support/server-process';

const lines = (out: string) =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('start-up output at LOG_LEVEL=info', () => {
  it('is one summary line (URL, /docs, database and data dir, secrets, log level); probes and framework chatter stay at debug', { timeout: 180_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'proxy-startup-'));
    // embedded mode with no secrets given: the first start generates them, the second reads them back
    const env = { DATABASE_URL: '', JWT_SECRET: '', ENCRYPTION_KEY: '', LOG_LEVEL: 'info' };
    try {
      const first = await startServerProcess(env, { dataDir });
      for (let i = 0; i < 3; i++) expect((await fetch(`${first.url}/health`)).status).toBe(200);
      expect((await fetch(`${first.url}/metrics`)).status).toBe(200);
      const missing = await fetch(`${first.url}/v1/personas`);
      expect(missing.status).toBe(401);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const logged = lines(first.output());
      const summaryAt = logged.findIndex((l) => l.msg === 'server listening');
      // nothing before the summary
      expect(summaryAt).toBe(0);
      expect(logged[0]).toMatchObject({
        level: 'info',
        port: first.port,
        url: `http://127.0.0.1:${first.port}`,
        docs: `http://127.0.0.1:${first.port}/docs`,
        database: 'embedded',
        data_dir: dataDir,
        secrets: `generated now into ${join(dataDir, 'secrets.json')} (development only)`,
        log_level: 'info',
      });
      // answered probes are not logged at info; other calls are
      const requests = logged.filter((l) => l.msg === 'request');
      expect(requests.map((l) => l.path)).toEqual(['/v1/personas']);
      expect(logged.some((l) => l.context === 'RouterExplorer' || l.context === 'InstanceLoader')).toBe(false);

      const second = await startServerProcess(env, { dataDir });
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect(lines(second.output())[0]).toMatchObject({ msg: 'server listening', secrets: `development secrets from ${join(dataDir, 'secrets.json')}` });
      await first.dispose();
      await second.dispose();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it.skipIf(!process.env.DATABASE_URL)('with secrets from the environment on PostgreSQL, the summary says so and shows no credentials', { timeout: 120_000 }, async () => {
    const server = await startServerProcess({ LOG_LEVEL: 'info' });
    try {
      const summary = lines(server.output()).find((l) => l.msg === 'server listening')!;
      const db = new URL(process.env.DATABASE_URL!);
      expect(summary).toMatchObject({ database: 'postgresql', database_at: `${db.hostname}:${db.port || 5432}${db.pathname}`, secrets: 'from the environment' });
      if (db.password) expect(JSON.stringify(summary)).not.toContain(db.password);
    } finally {
      await server.dispose();
    }
  });
});
