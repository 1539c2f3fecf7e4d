import { Agent, request } from 'node:http';
import { Client } from 'pg';
import { startEmbeddedDatabase } from '../../src/database/embedded-database';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';
import { parseSse } from '../support/proxy-test-helpers';
import { cliOrg, startServerProcess, type ServerProcess } from '../support/server-process';

/** src/server.ts SHUTDOWN_CLEANUP_MS: what the app and the database may take once the HTTP drain is over */
const CLEANUP_MS = 5000;

interface Answer {
  status: number;
  connection: string | undefined;
  sentAt: number;
}

/**
 * A client that sends calls one after another on one kept-alive connection, as a busy backend does,
 * until the server stops answering.
 */
function hammer(url: string, token: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const answers: Answer[] = [];
  const errors: string[] = [];
  let stopped = false;
  const one = () =>
    new Promise<void>((resolve) => {
      const sentAt = performance.now();
      const req = request(`${url}/v1/personas`, { agent, headers: { authorization: `Bearer ${token}`, 'x-user-id': 'drain@example.com' } }, (res) => {
        res.resume();
        res.on('end', () => {
          answers.push({ status: res.statusCode!, connection: res.headers.connection, sentAt });
          resolve();
        });
        res.on('error', (err: NodeJS.ErrnoException) => {
          errors.push(err.code ?? err.message);
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        errors.push(err.code ?? err.message);
        resolve();
      });
      req.end();
    });
  const done = (async () => {
    const deadline = performance.now() + 40_000;
    while (!stopped && performance.now() < deadline) {
      await one();
      // a refused connection means the server no longer listens: the client would go to another replica
      if (errors.includes('ECONNREFUSED')) break;
    }
    agent.destroy();
  })();
  return {
    answers,
    errors,
    done,
    stop() {
      stopped = true;
    },
  };
}

/** A query on the database the (now stopped) server process used. */
async function query(server: ServerProcess, sql: string, params: unknown[]): Promise<any[]> {
  const embedded = server.env.DATABASE_URL ? undefined : await startEmbeddedDatabase(server.dataDir);
  const client = new Client({ connectionString: embedded?.url ?? server.env.DATABASE_URL });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
    await embedded?.close();
  }
}

describe('SIGTERM drains the server within SHUTDOWN_TIMEOUT_MS', () => {
  let fake: FakeUpstream;
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    fake = await startFakeUpstream();
  });
  afterEach(async () => {
    await server?.dispose();
    server = undefined;
    fake.reset();
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('answers the calls in flight (a stream included), tells kept-alive clients Connection: close, and exits', { timeout: 120_000 }, async () => {
    const timeoutMs = 8000;
    server = await startServerProcess({ OPENAI_BASE_URL: fake.url, SHUTDOWN_TIMEOUT_MS: String(timeoutMs) });
    const { token } = await cliOrg(server, fake.url);

    const client = hammer(server.url, token);
    await new Promise((r) => setTimeout(r, 300));
    expect(client.answers.length).toBeGreaterThan(0);
    expect(client.answers.every((a) => a.status === 200)).toBe(true);

    // a stream that takes about 2 s, well inside the bound
    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 250 });
    const stream = await fetch(`${server.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-user-id': 'drain@example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'drain me', stream: true }),
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read();

    const signalledAt = performance.now();
    server.child.kill('SIGTERM');
    const code = await server.exited;
    const exitMs = performance.now() - signalledAt;
    let text = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    client.stop();
    await client.done;

    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(timeoutMs + CLEANUP_MS);
    // the stream in flight at the signal was answered in full
    expect(parseSse(text).some((e) => e.event === 'response.completed')).toBe(true);
    // the kept-alive client got at most the call it had in flight (and one more) after the signal, each saying
    // Connection: close; then the server no longer listened. No call was cut.
    const after = client.answers.filter((a) => a.sentAt >= signalledAt);
    expect(after.length).toBeLessThanOrEqual(2);
    const last = client.answers[client.answers.length - 1];
    expect(last.status).toBe(200);
    expect(last.connection).toBe('close');
    expect(client.errors.filter((e) => e !== 'ECONNREFUSED')).toEqual([]);
  });

  it('cuts a stream still running at the bound and exits within it', { timeout: 120_000 }, async () => {
    const timeoutMs = 1500;
    server = await startServerProcess({ OPENAI_BASE_URL: fake.url, SHUTDOWN_TIMEOUT_MS: String(timeoutMs) });
    const { token } = await cliOrg(server, fake.url);

    // about 14 s of stream: far longer than the bound
    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 2000 });
    const stream = await fetch(`${server.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-user-id': 'drain@example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'too long', stream: true }),
    });
    const requestId = stream.headers.get('x-request-id')!;
    const reader = stream.body!.getReader();
    await reader.read();

    const signalledAt = performance.now();
    server.child.kill('SIGTERM');
    const code = await server.exited;
    const exitMs = performance.now() - signalledAt;
    await reader.read().then(
      async () => {
        while (!(await reader.read()).done);
      },
      () => undefined,
    );
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(timeoutMs + CLEANUP_MS);
    expect(server.output()).toMatch(/"msg":"shutdown: calls still running at SHUTDOWN_TIMEOUT_MS were cut","cut":1/);
    // the cut stream's record is final, not left pending
    const [row] = await query(server, 'SELECT status FROM exchanges WHERE id = $1', [requestId]);
    expect(row.status).toBe('client_aborted');
  });
});

/** Sends a proxied call and cuts its connection `afterMs` later (as a load generator does when its run ends). */
function cutCall(url: string, token: string, body: object, path: string, afterMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = request(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-user-id': 'cut@example.com', 'content-type': 'application/json' },
    });
    req.on('response', (res) => {
      res.on('data', () => undefined);
      res.on('end', resolve);
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end(JSON.stringify(body));
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

describe('a graceful stop leaves no exchange pending', () => {
  let fake: FakeUpstream;
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    // answers take a while: calls are cut before the upstream answered, while their rows are written, mid-stream
    fake = await startFakeUpstream({ deltaCount: 8 });
  });
  afterAll(async () => {
    await server?.dispose();
    await fake?.close();
  });

  it('finishes the record of every call, those whose clients left just before the signal included', { timeout: 180_000 }, async () => {
    // RECORD_PENDING_AFTER_MS short: JSON calls too are cut both before and after their pending row is written
    server = await startServerProcess({ OPENAI_BASE_URL: fake.url, SHUTDOWN_TIMEOUT_MS: '8000', RECORD_PENDING_AFTER_MS: '20' });
    const { orgId, token } = await cliOrg(server, fake.url);
    // warmed up: the organization's keys cached, so that the cut calls reach the upstream
    const warm = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-user-id': 'cut@example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(warm.status).toBe(200);
    const kinds: [string, object][] = [
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }],
      ['/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true }],
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }],
      ['/v1/responses', { model: 'gpt-4o-mini', input: 'hi' }],
    ];
    // a load that ends all at once: every client cuts its call at some moment of it, and the signal follows.
    // Sent in waves until at least 20 calls reached the upstream (a busy machine forwards fewer per wave).
    const calls: Promise<void>[] = [];
    const forwarded = () => fake.requests.length - 1; // the warm-up call excluded
    for (let wave = 0; wave < 12 && (wave < 6 || forwarded() <= 20); wave++) {
      // each call paced on its own: some answer (or end their stream) before their pending row is written
      for (let i = 0; i < 40; i++) {
        fake.enqueue({ kind: 'slow-stream', firstByteMs: Math.floor(Math.random() * 120), eventIntervalMs: Math.floor(Math.random() * 20) });
      }
      for (let i = 0; i < 40; i++) {
        const [path, body] = kinds[i % kinds.length];
        calls.push(cutCall(server.url, token, body, path, Math.floor(Math.random() * 220)));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(calls);
    const reached = forwarded();
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    const rows = await query(server, 'SELECT status, count(*)::int AS n FROM exchanges WHERE organization_id = $1 GROUP BY status', [orgId]);
    const statuses = Object.fromEntries(rows.map((r) => [r.status, r.n]));
    // more than 20 calls reached the upstream, each of them was recorded, and none was left pending
    const recorded = Object.values(statuses).reduce((a: number, b) => a + (b as number), 0) - 1;
    expect(reached).toBeGreaterThan(20);
    expect(recorded, JSON.stringify(statuses)).toBeGreaterThanOrEqual(reached);
    expect(statuses.pending ?? 0, JSON.stringify(statuses)).toBe(0);
  });
});
