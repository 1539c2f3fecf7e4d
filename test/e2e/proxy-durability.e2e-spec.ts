import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseHandle, startEmbeddedDatabase } from '../../src/database/embedded-database';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';
import { ExchangeRecorder } from '../../src/exchanges/recorder/exchange-recorder.service';
import { Client } from 'pg';

const DATABASE_URL = process.env.DATABASE_URL;
const MAIN_JS = resolve(__dirname, '../../dist/src/main.js');

/** A TCP forwarder in front of PostgreSQL that the test can cut and restore (the shared server is never stopped). */
async function startTcpProxy(target: net.NetConnectOpts) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((done, fail) => {
      server = net.createServer((client) => {
        const upstream = net.connect(target);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => {
            sockets.delete(s);
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      server.once('error', fail);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        done();
      });
    });
  await listen();
  return {
    get port() {
      return port;
    },
    async cut() {
      const s = server!;
      server = undefined;
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => s.close(r));
    },
    restore: listen,
    async close() {
      if (server) await this.cut();
    },
  };
}

describe('proxy: database outages and durability', () => {
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('with the database unreachable the proxy answers 503 with Retry-After, calls no upstream, and recovers by itself', async () => {
    let embedded: DatabaseHandle | undefined;
    let dir: string | undefined;
    let target: URL;
    if (DATABASE_URL) target = new URL(DATABASE_URL);
    else {
      dir = mkdtempSync(join(tmpdir(), 'proxy-dbdown-'));
      embedded = await startEmbeddedDatabase(dir);
      target = new URL(embedded.url);
    }
    // the embedded database listens on a Unix socket in the directory its URL names as `host`
    const socketDir = target.searchParams.get('host');
    const tcp = await startTcpProxy(socketDir ? { path: join(socketDir, '.s.PGSQL.5432') } : { host: target.hostname, port: Number(target.port || 5432) });
    const proxied = new URL(target.toString());
    proxied.searchParams.delete('host');
    proxied.searchParams.delete('port');
    proxied.hostname = '127.0.0.1';
    proxied.port = String(tcp.port);
    let app: TestApp | undefined;
    try {
      app = await createTestApp({ DATABASE_URL: proxied.toString() });
      const o = await proxyOrg(app, fake.url);
      const warm = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'before' });
      expect(warm.status).toBe(200);
      const newcomer = await createUser(app, o.orgId);
      const upstreamCalls = fake.requests.length;

      await tcp.cut();
      // the lost connections tell of the outage before any write fails: the next call writes its row first
      const recorder = app.app.get(ExchangeRecorder);
      await waitFor(() => !recorder.healthy, 3000, 'the outage to be noticed');
      const down = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'during' });
      expect(down.status).toBe(503);
      expect(down.body.error.type).toBe('service_unavailable');
      expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0);
      // nothing goes upstream until the database is back
      expect(fake.requests.length).toBe(upstreamCalls);
      const seen = fake.requests.length;
      for (let i = 0; i < 3; i++) {
        const again = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'during' });
        expect(again.status).toBe(503);
      }
      expect(fake.requests.length).toBe(seen);
      // a user never seen by this process needs the database too: still 503, never 401/403
      const unknownUser = await api(app, o.token, `stranger-${Date.now()}`)('POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [] });
      expect(unknownUser.status).toBe(503);
      expect((await o.call('GET', `/v1/requests/${warm.headers.get('x-request-id')}`)).status).toBe(503);
      expect(newcomer.id).toBeTruthy();

      await tcp.restore();
      let after: Awaited<ReturnType<typeof o.call>> | undefined;
      await waitFor(async () => {
        after = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after' });
        return after.status === 200;
      }, 10000, 'recovery');
      const rec = await o.call('GET', `/v1/requests/${after!.headers.get('x-request-id')}`);
      expect(rec.body.status).toBe('completed');
    } finally {
      await app?.close();
      await tcp.close();
      await embedded?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!DATABASE_URL)('read-your-writes: a second server process sees the completed exchange at once', async () => {
    const a = await createTestApp();
    const b = await createTestApp(a.env);
    try {
      const o = await proxyOrg(a, fake.url);
      const fromB = api(b, o.token, o.userId);
      for (let i = 0; i < 5; i++) {
        const stream = i % 2 === 1;
        const res = await fetch(`${a.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', input: `n${i}`, stream }),
        });
        await res.text();
        const rec = await fromB('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
        expect(rec.status).toBe(200);
        expect(rec.body.status).toBe('completed');
        const resp = await fromB('GET', `/v1/responses/${rec.body.response_id}`);
        expect(resp.status).toBe(200);
        expect(resp.body.status).toBe('completed');
      }
    } finally {
      await b.close();
      await a.close();
    }
  });

  it.skipIf(!DATABASE_URL || !existsSync(MAIN_JS))('a killed server process leaves its pending exchange, marked interrupted after a restart', async () => {
    const a = await createTestApp();
    let child: ChildProcess | undefined;
    let restarted: TestApp | undefined;
    try {
      const o = await proxyOrg(a, fake.url);
      child = spawn(process.execPath, [MAIN_JS], {
        env: { ...process.env, ...a.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', DATA_DIR: a.dataDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      await waitFor(() => /"msg":"server listening"/.test(out), 20000, 'the child server');
      const port = Number(/"msg":"server listening","port":(\d+)/.exec(out)![1]);

      fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 2000 });
      const res = await fetch(`http://127.0.0.1:${port}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'doomed', stream: true }),
      });
      const reader = res.body!.getReader();
      await reader.read();
      const id = res.headers.get('x-request-id')!;
      expect((await o.call('GET', `/v1/requests/${id}`)).body.status).toBe('pending');
      // its record is an open call of the process
      const [{ instance_id: instance }] = await a.dataSource.query('SELECT instance_id FROM open_calls WHERE id = $1', [id]);

      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      await reader.cancel().catch(() => undefined);
      // the killed process's connections disappear from pg_stat_activity once Postgres notices
      await waitFor(async () => {
        const rows = await a.dataSource.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [`openai-proxy:${instance}`]);
        return rows.length === 0;
      }, 10000, 'the dead connections to go');

      restarted = await createTestApp(a.env);
      const rec = await pollRequest(o.call, id, (r) => r.status !== 'pending', 5000);
      expect(rec.status).toBe('interrupted');
      expect(rec.error.code).toBe('interrupted');
      expect(await restarted.dataSource.query('SELECT id FROM open_calls WHERE id = $1', [id])).toEqual([]);
    } finally {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      await restarted?.close();
      await a.close();
    }
  });

  it('an open call lost by the database (an asynchronous commit lost in a crash): the exchange is written whole with its outcome', async () => {
    const app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    try {
      const org = await proxyOrg(app, fake.url);
      fake.enqueue({ kind: 'slow-stream', firstByteMs: 400, eventIntervalMs: 5 });
      const pending = fetch(`${app.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${org.token}`, 'x-user-id': org.userId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'keep me', stream: true }),
      });
      let id = '';
      await waitFor(async () => {
        const rows = await app.dataSource.query(`SELECT id FROM open_calls WHERE organization_id = $1`, [org.orgId]);
        id = rows[0]?.id ?? '';
        return id !== '';
      }, 5000, 'the open call');
      // a crash loses the asynchronous commit and takes every connection with it
      await app.dataSource.query('DELETE FROM open_calls WHERE id = $1', [id]);
      (app.app.get(ExchangeRecorder) as any).connectionLost();
      const res = await pending;
      expect(res.status).toBe(200);
      await res.text();
      const row = await org.call('GET', `/v1/requests/${id}`);
      expect(row.status).toBe(200);
      expect(row.body).toMatchObject({ id, status: 'completed', user_id: org.userId });
      expect(row.body.output_text).toBe('Echo: keep me');
    } finally {
      await app.close();
    }
  });

  describe.skipIf(!DATABASE_URL)('faults while calls are in flight: every call that reached the upstream gets its row, none stays pending', () => {
    let app: TestApp;
    let o: ProxyTestOrg;

    beforeAll(async () => {
      // a short write timeout keeps the test quick; the mechanism is the same at the default
      app = await createTestApp({ RECORD_WRITE_TIMEOUT_MS: '1000' });
      o = await proxyOrg(app, fake.url);
    });
    afterAll(async () => {
      await app?.close();
    });

    /** Ten calls (half of them streams) with marked inputs; resolves with their answers' statuses. */
    function tenCalls(tag: string): Promise<number[]> {
      return Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const r = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: `${tag} ${i}`, stream: i % 2 === 1 });
          return r.status;
        }),
      );
    }

    /** Every marked call the upstream received has its row, none pending, and the recorder holds nothing back. */
    async function everyUpstreamCallRecorded(tag: string): Promise<{ status: string; error: any; input_tokens: string | null }[]> {
      const inputs = fake.requests.map((r) => r.body?.input).filter((x): x is string => typeof x === 'string' && x.startsWith(tag));
      expect(inputs.length).toBeGreaterThan(0);
      const recorder = app.app.get(ExchangeRecorder);
      let rows: { input: string; status: string; error: any; input_tokens: string | null }[] = [];
      await waitFor(async () => {
        rows = await app.dataSource.query(
          `SELECT request_body->>'input' AS input, status, error, input_tokens FROM exchanges WHERE organization_id = $1 AND request_body->>'input' LIKE $2`,
          [o.orgId, `${tag}%`],
        );
        return rows.length === inputs.length && rows.every((r) => r.status !== 'pending') && recorder.keptForLater === 0;
      }, 15000, 'every upstream call to be recorded');
      expect(rows.map((r) => r.input).sort()).toEqual([...inputs].sort());
      expect(app.logs.some((l) => /duplicate key/.test(l))).toBe(false);
      // nothing of these calls is held in memory any more (request bodies included)
      expect((recorder as any).pendingRows.size).toBe(0);
      return rows;
    }

    it('LOCK TABLE exchanges, open_calls longer than the write timeout: 503s, then every row written once the lock goes', async () => {
      fake.reset();
      const blocker = new Client({ connectionString: app.db.url });
      await blocker.connect();
      let statuses: number[] = [];
      try {
        await blocker.query('BEGIN');
        await blocker.query('LOCK TABLE exchanges, open_calls');
        statuses = await tenCalls('locked');
        // held past a retry or two of the kept rows
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        await blocker.query('COMMIT').catch(() => undefined);
        await blocker.end();
      }
      expect(statuses.every((s) => s === 503)).toBe(true);
      const rows = await everyUpstreamCallRecorded('locked');
      // the answers were withheld: interrupted, saying why, with the usage the upstream reported where it did
      expect(rows.every((r) => r.status === 'interrupted' && r.error.code === 'database_unavailable')).toBe(true);
      expect(rows.some((r) => Number(r.input_tokens) > 0)).toBe(true);
      expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after the lock' })).status).toBe(200);
    });

    it('the connections die under writes in flight (the database going away): every upstream call still gets its row', async () => {
      fake.reset();
      const recorder = app.app.get(ExchangeRecorder);
      const blocker = new Client({ connectionString: app.db.url });
      await blocker.connect();
      let calls: Promise<number[]> | undefined;
      try {
        await blocker.query('BEGIN');
        await blocker.query('LOCK TABLE exchanges, open_calls IN SHARE MODE');
        calls = tenCalls('terminated');
        // once the record writes are stuck behind the lock, every connection of the server is terminated
        await waitFor(async () => {
          const waiting = await blocker.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
            [`openai-proxy:${recorder.instanceId}`],
          );
          return waiting.rows[0].n > 0 && fake.requests.length === 10;
        }, 5000, 'record writes waiting on the lock');
        await blocker.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`openai-proxy:${recorder.instanceId}`]);
      } finally {
        await blocker.query('COMMIT').catch(() => undefined);
        await blocker.end();
      }
      const statuses = await calls!;
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
      const rows = await everyUpstreamCallRecorded('terminated');
      expect(rows.every((r) => r.status === 'completed' || r.status === 'interrupted')).toBe(true);
      await waitFor(async () => (await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after' })).status === 200, 10000, 'recovery');
    });

    it("a process clears its own pending rows that no running call owns (a write that committed after it was given up on)", async () => {
      const recorder = app.app.get(ExchangeRecorder);
      const id = `req_orphan_${Date.now()}`;
      await app.dataSource.query(
        `INSERT INTO open_calls (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, instance_id, created_at, request_body)
         VALUES ($1, $2, gen_random_uuid(), 'orphan-user', 'sess_orphan', 'responses', 'gpt-4o-mini', false, $3, now() - interval '1 minute', '{"input":"orphan"}')`,
        [id, o.orgId, recorder.instanceId],
      );
      // and a pending row of exchanges, as an earlier version wrote them
      const legacy = `req_orphan_legacy_${Date.now()}`;
      await app.dataSource.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, status, instance_id, created_at)
         VALUES ($1, $2, gen_random_uuid(), 'orphan-user', 'sess_orphan', 'responses', 'gpt-4o-mini', false, 'pending', $3, now() - interval '1 minute')`,
        [legacy, o.orgId, recorder.instanceId],
      );
      // a running call of this process keeps its pending row
      fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 100 });
      const running = fetch(`${app.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'still running', stream: true }),
      });
      const res = await running;
      const runningId = res.headers.get('x-request-id')!;
      await new Promise((r) => setTimeout(r, 50));
      expect(await recorder.sweep()).toBeGreaterThanOrEqual(2);
      // the open call is written whole as an interrupted exchange, keeping what it had
      const [orphan] = await app.dataSource.query('SELECT status, error, session_id, request_body, completed_at FROM exchanges WHERE id = $1', [id]);
      expect(orphan).toMatchObject({ status: 'interrupted', session_id: 'sess_orphan', request_body: { input: 'orphan' } });
      expect(orphan.error.code).toBe('interrupted');
      expect(orphan.completed_at).not.toBeNull();
      expect(await app.dataSource.query('SELECT id FROM open_calls WHERE id = $1', [id])).toEqual([]);
      const [old] = await app.dataSource.query('SELECT status, error FROM exchanges WHERE id = $1', [legacy]);
      expect(old.status).toBe('interrupted');
      expect(old.error.code).toBe('interrupted');
      // a running call of this process keeps its open call
      expect(await app.dataSource.query('SELECT id FROM open_calls WHERE id = $1', [runningId])).toHaveLength(1);
      expect(await app.dataSource.query('SELECT id FROM exchanges WHERE id = $1', [runningId])).toEqual([]);
      await res.text();
      expect((await pollRequest(o.call, runningId, (r) => r.status !== 'pending')).status).toBe('completed');
    });
  });
});
