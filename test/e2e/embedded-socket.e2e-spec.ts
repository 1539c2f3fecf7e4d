import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseHandle, startEmbeddedDatabase } from '../../src/database/embedded-database';
import { TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../support/create-test-app';
import { NODE, runCli } from '../support/run-cli';

const RUNUSER = ['/usr/sbin/runuser', '/sbin/runuser'].find((p) => existsSync(p));
// the other user runs a Node it can reach: the project's own sits inside the checkout, which may be private to its
// owner (a clone in a 0700 temporary directory); any Node will do for a plain socket connection
const OTHER_USERS_NODE = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p)) ?? NODE;

/**
 * Sends a PostgreSQL startup message as another OS user to wherever the running server's endpoint file says the
 * database listens, and reports what happened: `answered:<message type>` or `refused:<error code>`.
 */
function connectAs(user: string, dataDir: string): string {
  const ep = JSON.parse(readFileSync(join(dataDir, 'embedded-db.json'), 'utf8')) as Record<string, unknown>;
  const target = typeof ep.socket === 'string' ? { path: ep.socket } : { host: ep.host, port: ep.port };
  const script = `
    const net = require('node:net');
    const s = net.connect(JSON.parse(process.argv[1]));
    s.on('connect', () => {
      const params = Buffer.from('user\\0postgres\\0database\\0postgres\\0\\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + params.length, 0);
      head.writeInt32BE(196608, 4);
      s.write(Buffer.concat([head, params]));
    });
    s.on('data', (d) => { console.log('answered:' + String.fromCharCode(d[0])); process.exit(0); });
    s.on('error', (e) => { console.log('refused:' + e.code); process.exit(0); });
    setTimeout(() => { console.log('refused:timeout'); process.exit(0); }, 5000);`;
  return execFileSync(RUNUSER!, ['-u', user, '--', OTHER_USERS_NODE, '-e', script, JSON.stringify(target)], { encoding: 'utf8' }).trim();
}

describe.skipIf(process.getuid?.() !== 0 || !RUNUSER)("the embedded database's socket is the owner's alone", () => {
  let dataDir: string;
  let db: DatabaseHandle;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'proxy-socket-'));
    // a DATA_DIR other users may enter (as ./data usually is): the database must still keep them out
    chmodSync(dataDir, 0o755);
    db = await startEmbeddedDatabase(dataDir);
  });

  afterAll(async () => {
    await db?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('another OS user cannot connect', () => {
    expect(connectAs('nobody', dataDir)).toMatch(/^refused:(EACCES|ENOENT|EPERM)$/);
  });

  it('the owner can, through the URL the endpoint file gives', async () => {
    const ep = JSON.parse(readFileSync(join(dataDir, 'embedded-db.json'), 'utf8'));
    expect(ep.url).toBe(db.url);
    const client = new Client({ connectionString: ep.url });
    await client.connect();
    try {
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });

  it('the socket, its directory and the database files are private to the owner', () => {
    const ep = JSON.parse(readFileSync(join(dataDir, 'embedded-db.json'), 'utf8'));
    expect(statSync(ep.socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(ep.socket, '..')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'pgdata')).mode & 0o777).toBe(0o700);
  });

  it('the CLI, a second process, works through the socket', async () => {
    const env = { DATA_DIR: dataDir, JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };
    const made = await runCli(['org', 'create', 'socket-org', '--json'], env);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const listed = await runCli(['org', 'list', '--json'], env);
    expect(listed.json.data.map((o: { name: string }) => o.name)).toContain('socket-org');
  });
});
