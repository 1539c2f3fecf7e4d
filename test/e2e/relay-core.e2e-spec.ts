import OpenAI, { toFile } from 'openai';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { pollRequest } from '../support/proxy-test-helpers';

/** One upstream call as the upstream saw it. */
interface Seen {
  method: string;
  url: string;
  key: string;
  headers: http.IncomingHttpHeaders;
  bytes: number;
  sha256: string;
}

/**
 * A small OpenAI stand-in for the relay's own rules (affinity, retries, headers): files made per key, uploads
 * counted and hashed as they stream in, and a queue of failures for the next POSTs.
 */
async function startUpstream() {
  const seen: Seen[] = [];
  const files = new Map<string, { key: string; bytes: number }>();
  const failures: ('drop' | 500)[] = [];
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
      if (bytes < 1_000_000) chunks.push(c);
    });
    req.on('end', () => {
      const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      seen.push({ method: req.method!, url: req.url!, key, headers: req.headers, bytes, sha256: hash.digest('hex') });
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req_up_${seen.length}` });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'POST' && failures.length) {
        const f = failures.shift()!;
        if (f === 'drop') return req.socket.destroy();
        return json(500, { error: { message: 'boom', type: 'server_error', code: null, param: null } });
      }
      const path = req.url!.split('?')[0];
      if (req.method === 'POST' && path === '/v1/files') {
        const id = `file-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
        files.set(id, { key, bytes });
        return json(200, { id, object: 'file', bytes, purpose: 'assistants', filename: 'x.jsonl', created_at: 1, status: 'processed' });
      }
      const m = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(path);
      if (m) {
        const f = files.get(m[1]);
        if (!f || f.key !== key) return json(404, { error: { message: `No such File object: ${m[1]}`, type: 'invalid_request_error', code: null, param: 'id' } });
        if (req.method === 'DELETE') return json(200, { id: m[1], object: 'file', deleted: true });
        if (m[2]) {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-request-id': 'req_up_content' });
          return res.end(Buffer.alloc(f.bytes, 7));
        }
        return json(200, { id: m[1], object: 'file', bytes: f.bytes, purpose: 'assistants', filename: 'x.jsonl', created_at: 1, status: 'processed' });
      }
      if (req.method === 'POST' && path === '/v1/embeddings') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        return json(200, {
          object: 'list',
          model: body.model,
          data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3, 0.4] }],
          usage: { prompt_tokens: 7, total_tokens: 7 },
        });
      }
      if (req.method === 'POST' && path === '/v1/batches') return json(200, { id: `batch_${randomUUID().replace(/-/g, '')}`, object: 'batch', status: 'validating' });
      if (req.method === 'GET' && /^\/v1\/batches\/[^/]+$/.test(path)) return json(200, { id: path.split('/')[3], object: 'batch', status: 'in_progress' });
      json(404, { error: { message: `Invalid URL (${req.method} ${path})`, type: 'invalid_request_error', code: null, param: null } });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return { url, seen, failures, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('the generic relay: every OpenAI route, with affinity, safe retries and a record per call', () => {
  let app: TestApp;
  let up: Awaited<ReturnType<typeof startUpstream>>;

  beforeAll(async () => {
    up = await startUpstream();
    app = await createTestApp({ UPSTREAM_MAX_RETRIES: '2' });
  });
  afterAll(async () => {
    await app?.close();
    await up?.close();
  });

  /** An organization with an org key, two users with keys of their own and one without. */
  async function setup() {
    const org = await createOrg(app);
    await createKey(app, org.orgId, 'sk-org-key-0001', { baseUrl: up.url });
    const a = await createUser(app, org.orgId);
    const b = await createUser(app, org.orgId);
    await createKey(app, org.orgId, 'sk-user-a-0001', { baseUrl: up.url, userId: a.external_id });
    await createKey(app, org.orgId, 'sk-user-b-0001', { baseUrl: up.url, userId: b.external_id });
    const client = (user: string) => new OpenAI({ baseURL: `${app.url}/v1`, apiKey: org.token, defaultHeaders: { 'X-User-ID': user }, maxRetries: 0 });
    return {
      org,
      ua: a.external_id,
      a: client(a.external_id),
      b: client(b.external_id),
      c: client('user-c@example.com'),
      d: client('user-d@example.com'),
      call: (u: string) => api(app, org.token, u),
    };
  }

  it('an unknown route is 404 unknown_route naming it; the administration API is refused; a model call is recorded with usage', async () => {
    const { c, call } = await setup();
    const unknown = await call('user-c@example.com')('GET', '/v1/not-a-route/x');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'unknown_route', message: 'Unknown route: GET /v1/not-a-route/x' });
    const admin = await call('user-c@example.com')('GET', '/v1/organization/users');
    expect(admin.status).toBe(403);
    expect(admin.body.error.code).toBe('admin_route_not_relayed');

    const { data, response } = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' }).withResponse();
    expect(data.data[0].embedding).toHaveLength(4);
    const id = response.headers.get('x-request-id')!;
    expect(response.headers.get('x-upstream-request-id')).toMatch(/^req_up_/);
    const row = await pollRequest(call('user-c@example.com'), id, (r) => r.status === 'completed');
    expect(row).toMatchObject({ method: 'POST', route: '/v1/embeddings', endpoint: 'embeddings', model: 'text-embedding-3-small', upstream_status: 200 });
    expect(row.upstream_request_id).toBe(response.headers.get('x-upstream-request-id'));
    expect(row.usage).toMatchObject({ input_tokens: 7, total_tokens: 7 });
    // text-embedding-3-small: $0.02 per million tokens
    expect(row.cost).toBeCloseTo(0.00000014, 12);
    // vectors are not stored, their count and dimensions are
    expect(row.response_body.data).toBeUndefined();
    expect(row.response_body.embeddings).toEqual({ count: 1, dimensions: 4 });
  });

  it('a file made with a user’s own key is theirs alone and reached with that key; an org-key object is every user’s', async () => {
    const { ua, a, b, c, d, call } = await setup();
    const content = Buffer.alloc(300_000, 'x');
    const made = await a.files.create({ file: await toFile(content, 'data.jsonl'), purpose: 'assistants' }).withResponse();
    const fileId = made.data.id;
    const upload = up.seen.at(-1)!;
    expect(upload.key).toBe('sk-user-a-0001');
    expect(upload.bytes).toBeGreaterThan(300_000);

    const row = await pollRequest(call(ua), made.response.headers.get('x-request-id')!, (r) => r.status === 'completed');
    expect(row).toMatchObject({ route: '/v1/files', object_id: fileId, request_body: expect.objectContaining({ purpose: 'assistants' }) });
    expect(row.request_content_type).toMatch(/^multipart\/form-data/);
    expect(row.request_bytes).toBe(upload.bytes);

    // A reads it again (the upstream sees A's key); B and C get 404 without any upstream call
    const before = up.seen.length;
    expect((await a.files.retrieve(fileId)).id).toBe(fileId);
    expect(up.seen.at(-1)!.key).toBe('sk-user-a-0001');
    await expect(b.files.retrieve(fileId)).rejects.toMatchObject({ status: 404 });
    await expect(c.files.content(fileId)).rejects.toMatchObject({ status: 404 });
    expect(up.seen.length).toBe(before + 1);
    // nor can another organization's user, whatever key they hold
    const other = await setup();
    await expect(other.a.files.retrieve(fileId)).rejects.toMatchObject({ status: 404 });
    expect(up.seen.length).toBe(before + 1);

    // the download streams through with its type and size recorded
    const dl = await a.files.content(fileId).withResponse();
    expect(Buffer.from(await dl.data.arrayBuffer()).length).toBe(upload.bytes);
    const dlRow = await pollRequest(call(ua), dl.response.headers.get('x-request-id')!, (r) => r.status === 'completed');
    expect(dlRow).toMatchObject({ route: '/v1/files/{file_id}/content', response_content_type: 'application/octet-stream', response_bytes: upload.bytes, response_body: null });

    // a batch made with the organization key (C has no key of their own) is reachable by D, with the org key
    const batch = await c.batches.create({ input_file_id: 'file-elsewhere', endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(up.seen.at(-1)!.key).toBe('sk-org-key-0001');
    expect((await d.batches.retrieve(batch.id)).id).toBe(batch.id);
    expect(up.seen.at(-1)!.key).toBe('sk-org-key-0001');
    // but not by A through A's own key's objects: A's call naming it goes with the org key that made it
    await a.batches.retrieve(batch.id);
    expect(up.seen.at(-1)!.key).toBe('sk-org-key-0001');

    // delete is forwarded with the owner's key and noted
    await expect(b.files.delete(fileId)).rejects.toMatchObject({ status: 404 });
    expect((await a.files.delete(fileId)).deleted).toBe(true);
  });

  it('a relayed POST is never repeated without Idempotency-Key, and is with one; OpenAI-Beta reaches upstream, the token never does', async () => {
    const { c } = await setup();
    up.failures.push('drop');
    const before = up.seen.length;
    await expect(c.batches.create({ input_file_id: 'file-x', endpoint: '/v1/embeddings', completion_window: '24h' })).rejects.toMatchObject({ status: 502 });
    // one attempt reached the upstream (its connection was cut before the answer), and no second one came
    await new Promise((r) => setTimeout(r, 300));
    expect(up.seen.slice(before).map((s) => s.url)).toEqual(['/v1/batches']);

    up.failures.push(500);
    const n = up.seen.length;
    const batch = await c.batches.create(
      { input_file_id: 'file-x', endpoint: '/v1/embeddings', completion_window: '24h' },
      { headers: { 'Idempotency-Key': 'idem-123', 'OpenAI-Beta': 'assistants=v2' } },
    );
    expect(batch.object).toBe('batch');
    const attempts = up.seen.slice(n);
    expect(attempts).toHaveLength(2);
    for (const s of attempts) {
      expect(s.headers['idempotency-key']).toBe('idem-123');
      expect(s.headers['openai-beta']).toBe('assistants=v2');
      expect(s.key).toBe('sk-org-key-0001');
      expect(s.headers.cookie).toBeUndefined();
    }
  });
});
