import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppException } from '../../src/common/app-exception';
import { PersonasService } from '../../src/personas/personas.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg } from '../support/factories';

const notFoundBody = (id: string) => ({
  error: { message: `No persona found with id '${id}'`, type: 'not_found_error', code: 'not_found', param: null },
});

/** Resolves like the proxy does; a 404 comes back as the AppException's status instead of a throw. */
async function resolve(app: TestApp, orgId: string, id: string): Promise<{ version: number; content: string } | 404> {
  try {
    const p = await app.app.get(PersonasService).resolveForRequest(orgId, id);
    return { version: p.version, content: p.content };
  } catch (err) {
    if (err instanceof AppException && err.status === 404) return 404;
    throw err;
  }
}

/** Waits (up to `ms`) for another process to pick up a change from the change feed. */
async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    value = await read();
  }
  return value;
}

describe('personas', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  async function newOrg() {
    const org = await createOrg(app);
    return { ...org, call: api(app, org.token, `user-${randomUUID()}@example.com`) };
  }

  it('creates, reads, lists, changes and deletes a persona', async () => {
    const { call } = await newOrg();
    const created = await call('POST', '/v1/personas', { name: 'Support', content: 'You are support.', description: 'first line' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'Support',
      content: 'You are support.',
      description: 'first line',
      version: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      updated_at: expect.stringMatching(/Z$/),
    });
    const id = created.body.id;

    expect((await call('GET', `/v1/personas/${id}`)).body).toEqual(created.body);

    const withoutDescription = await call('POST', '/v1/personas', { name: 'Sales', content: 'You sell.' });
    expect(withoutDescription.status).toBe(201);
    expect(withoutDescription.body.description).toBeNull();

    const patched = await call('PATCH', `/v1/personas/${id}`, { content: 'You are kind support.' });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id, name: 'Support', content: 'You are kind support.', description: 'first line', version: 2 });
    expect(patched.body.created_at).toBe(created.body.created_at);
    expect(Date.parse(patched.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.body.updated_at));

    const deleted = await call('DELETE', `/v1/personas/${id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    for (const [method, path, body] of [
      ['GET', `/v1/personas/${id}`],
      ['PATCH', `/v1/personas/${id}`, { name: 'x' }],
      ['DELETE', `/v1/personas/${id}`],
      ['GET', `/v1/personas/${id}/versions`],
    ] as const) {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body).toEqual(notFoundBody(id));
    }
    const list = await call('GET', '/v1/personas');
    expect(list.body.data.map((p: { id: string }) => p.id)).toEqual([withoutDescription.body.id]);

    // the history stays for analytics
    const stored = await app.dataSource.query('SELECT version, content FROM persona_versions WHERE persona_id = $1 ORDER BY version', [id]);
    expect(stored).toEqual([
      { version: 1, content: 'You are support.' },
      { version: 2, content: 'You are kind support.' },
    ]);
  });

  it('a content change makes a new version; name and description changes keep it', async () => {
    const { call } = await newOrg();
    const { body: p } = await call('POST', '/v1/personas', { name: 'Tutor', content: 'v1 text' });

    const renamed = await call('PATCH', `/v1/personas/${p.id}`, { name: 'Math tutor', description: 'algebra' });
    expect(renamed.body).toMatchObject({ name: 'Math tutor', description: 'algebra', content: 'v1 text', version: 1 });
    const cleared = await call('PATCH', `/v1/personas/${p.id}`, { description: null });
    expect(cleared.body).toMatchObject({ description: null, version: 1 });
    const sameContent = await call('PATCH', `/v1/personas/${p.id}`, { content: 'v1 text' });
    expect(sameContent.body.version).toBe(1);

    await call('PATCH', `/v1/personas/${p.id}`, { content: 'v2 text' });
    const v3 = await call('PATCH', `/v1/personas/${p.id}`, { content: 'v3 text', name: 'Tutor' });
    expect(v3.body).toMatchObject({ name: 'Tutor', content: 'v3 text', version: 3 });

    const versions = await call('GET', `/v1/personas/${p.id}/versions`);
    expect(versions.status).toBe(200);
    expect(versions.body).toMatchObject({ object: 'list', has_more: false });
    expect(versions.body.data.map((v: any) => [v.version, v.content])).toEqual([
      [1, 'v1 text'],
      [2, 'v2 text'],
      [3, 'v3 text'],
    ]);
    for (const v of versions.body.data) expect(Object.keys(v).sort()).toEqual(['content', 'created_at', 'id', 'version']);
  });

  it('versions are paged like every list: limit 1–100 (default 20), after a version id, has_more, first_id/last_id', async () => {
    const { call } = await newOrg();
    const { body: p } = await call('POST', '/v1/personas', { name: 'Paged', content: 'text 1' });
    for (let v = 2; v <= 23; v++) expect((await call('PATCH', `/v1/personas/${p.id}`, { content: `text ${v}` })).status).toBe(200);

    const first = await call('GET', `/v1/personas/${p.id}/versions`);
    expect(first.body.data).toHaveLength(20);
    expect(first.body).toMatchObject({ has_more: true, first_id: first.body.data[0].id, last_id: first.body.data[19].id });
    const rest = await call('GET', `/v1/personas/${p.id}/versions?limit=100&after=${first.body.last_id}`);
    expect(rest.body.data.map((v: any) => v.version)).toEqual([21, 22, 23]);
    expect(rest.body.has_more).toBe(false);
    const two = await call('GET', `/v1/personas/${p.id}/versions?limit=2&after=${first.body.data[4].id}`);
    expect(two.body.data.map((v: any) => v.content)).toEqual(['text 6', 'text 7']);
    expect(two.body.has_more).toBe(true);

    for (const [query, param] of [
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=1&limit=2', 'limit'],
      [`after=${randomUUID()}`, 'after'],
      ['after=not-a-version', 'after'],
      ['order=desc', 'order'],
    ]) {
      const res = await call('GET', `/v1/personas/${p.id}/versions?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    // another persona's version is no cursor here
    const { body: other } = await call('POST', '/v1/personas', { name: 'Other', content: 'x' });
    const otherVersion = (await call('GET', `/v1/personas/${other.id}/versions`)).body.data[0].id;
    expect((await call('GET', `/v1/personas/${p.id}/versions?after=${otherVersion}`)).status).toBe(400);
  });

  it('concurrent content changes each get their own version', async () => {
    const { call } = await newOrg();
    const { body: p } = await call('POST', '/v1/personas', { name: 'Busy', content: 'start' });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => call('PATCH', `/v1/personas/${p.id}`, { content: `edit ${i}` })),
    );
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(results.map((r) => r.body.version).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7]);
    const versions = (await call('GET', `/v1/personas/${p.id}/versions`)).body.data;
    expect(versions.map((v: any) => v.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const current = (await call('GET', `/v1/personas/${p.id}`)).body;
    expect(current.version).toBe(7);
    expect(current.content).toBe(versions[6].content);
  });

  it('names are unique among live personas of an organization; a deleted name can be reused', async () => {
    const { call } = await newOrg();
    const first = await call('POST', '/v1/personas', { name: 'Coach', content: 'a' });
    const dup = await call('POST', '/v1/personas', { name: 'Coach', content: 'b' });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toMatchObject({ type: 'conflict_error', param: 'name' });

    const other = await call('POST', '/v1/personas', { name: 'Mentor', content: 'c' });
    const rename = await call('PATCH', `/v1/personas/${other.body.id}`, { name: 'Coach', content: 'changed' });
    expect(rename.status).toBe(409);
    expect(rename.body.error.type).toBe('conflict_error');
    // the refused PATCH left nothing half-written: no new version either
    expect((await call('GET', `/v1/personas/${other.body.id}`)).body).toMatchObject({ name: 'Mentor', content: 'c', version: 1 });
    expect((await call('GET', `/v1/personas/${other.body.id}/versions`)).body.data).toHaveLength(1);

    const concurrent = await Promise.all([1, 2, 3].map(() => call('POST', '/v1/personas', { name: 'Racer', content: 'x' })));
    expect(concurrent.map((r) => r.status).sort()).toEqual([201, 409, 409]);

    expect((await call('DELETE', `/v1/personas/${first.body.id}`)).status).toBe(204);
    const reused = await call('POST', '/v1/personas', { name: 'Coach', content: 'new coach' });
    expect(reused.status).toBe(201);
    expect(reused.body.id).not.toBe(first.body.id);
    expect(reused.body.version).toBe(1);

    // another organization has its own namespace
    const orgB = await newOrg();
    expect((await orgB.call('POST', '/v1/personas', { name: 'Coach', content: 'b' })).status).toBe(201);
  });

  it('lists oldest first with limit and after', async () => {
    const { call } = await newOrg();
    const ids: string[] = [];
    for (const name of ['a', 'b', 'c', 'd']) ids.push((await call('POST', '/v1/personas', { name, content: name })).body.id);
    await call('DELETE', `/v1/personas/${ids[1]}`);

    const page1 = await call('GET', '/v1/personas?limit=2');
    expect(page1.status).toBe(200);
    expect(page1.body).toMatchObject({ object: 'list', has_more: true, first_id: ids[0], last_id: ids[2] });
    expect(page1.body.data.map((p: any) => p.name)).toEqual(['a', 'c']);
    const page2 = await call('GET', `/v1/personas?limit=2&after=${page1.body.last_id}`);
    expect(page2.body).toMatchObject({ has_more: false, first_id: ids[3], last_id: ids[3] });
    // a deleted persona still works as a cursor
    expect((await call('GET', `/v1/personas?after=${ids[1]}`)).body.data.map((p: any) => p.name)).toEqual(['c', 'd']);

    expect((await call('GET', '/v1/personas')).body.data).toHaveLength(3);
    for (const q of ['limit=0', 'limit=101', 'limit=x']) {
      const res = await call('GET', `/v1/personas?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.param).toBe('limit');
    }
    const badCursor = await call('GET', `/v1/personas?after=${randomUUID()}`);
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error.param).toBe('after');
  });

  it("another organization's persona is a 404 with the same body as an unknown one", async () => {
    const orgA = await newOrg();
    const orgB = await newOrg();
    const { body: p } = await orgA.call('POST', '/v1/personas', { name: 'Secret', content: 'hidden' });
    const unknown = randomUUID();
    for (const id of [p.id, unknown]) {
      for (const [method, path, body] of [
        ['GET', `/v1/personas/${id}`],
        ['PATCH', `/v1/personas/${id}`, { content: 'stolen' }],
        ['DELETE', `/v1/personas/${id}`],
        ['GET', `/v1/personas/${id}/versions`],
      ] as const) {
        const res = await orgB.call(method, path, body);
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(res.body).toEqual(notFoundBody(id));
      }
    }
    expect((await orgB.call('GET', '/v1/personas')).body.data).toEqual([]);
    expect((await orgB.call('GET', `/v1/personas?after=${p.id}`)).status).toBe(400);
    // untouched
    expect((await orgA.call('GET', `/v1/personas/${p.id}`)).body).toMatchObject({ content: 'hidden', version: 1 });

    const notUuid = await orgA.call('GET', '/v1/personas/not-a-uuid');
    expect(notUuid.status).toBe(404);
    expect(notUuid.body).toEqual(notFoundBody('not-a-uuid'));
  });

  it('rejects invalid bodies with 400 and the offending field', async () => {
    const { call } = await newOrg();
    const cases: [unknown, string][] = [
      [{ content: 'x' }, 'name'],
      [{ name: '', content: 'x' }, 'name'],
      [{ name: '   ', content: 'x' }, 'name'],
      [{ name: 'n'.repeat(101), content: 'x' }, 'name'],
      [{ name: 42, content: 'x' }, 'name'],
      [{ name: 'ok' }, 'content'],
      [{ name: 'ok', content: '' }, 'content'],
      [{ name: 'ok', content: 'c'.repeat(100_001) }, 'content'],
      [{ name: 'ok', content: 'x', description: 'd'.repeat(2001) }, 'description'],
      [{ name: 'ok', content: 'x', description: 5 }, 'description'],
      [{ name: 'ok', content: 'x', version: 7 }, 'version'],
      [{ name: 'ok', content: 'x', id: randomUUID() }, 'id'],
      [{ name: 'ok', content: 'x', org_id: randomUUID() }, 'org_id'],
      [{ name: 'ok', content: 'x', created_at: '2020-01-01T00:00:00Z' }, 'created_at'],
    ];
    for (const [body, param] of cases) {
      const res = await call('POST', '/v1/personas', body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    const bounds = await call('POST', '/v1/personas', { name: 'n'.repeat(100), content: 'c'.repeat(100_000), description: 'd'.repeat(2000) });
    expect(bounds.status).toBe(201);

    const { body: p } = await call('POST', '/v1/personas', { name: 'Target', content: 'x' });
    for (const [body, param] of [
      [{ name: null }, 'name'],
      [{ content: null }, 'content'],
      [{ content: '' }, 'content'],
      [{ version: 9 }, 'version'],
    ] as const) {
      const res = await call('PATCH', `/v1/personas/${p.id}`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.param).toBe(param);
    }
    expect((await call('GET', `/v1/personas/${p.id}`)).body).toMatchObject({ name: 'Target', content: 'x', version: 1 });
    expect((await call('POST', '/v1/personas', '{"name":')).status).toBe(400);
  });

  it('resolveForRequest serves from memory and follows PATCH and DELETE', async () => {
    const orgA = await newOrg();
    const orgB = await newOrg();
    const { body: p } = await orgA.call('POST', '/v1/personas', { name: 'Cached', content: 'first' });
    // the creation's own change notice arrives asynchronously (and empties the cache once): let it land first
    await new Promise((r) => setTimeout(r, 1500));

    expect(await resolve(app, orgA.orgId, p.id)).toEqual({ version: 1, content: 'first' });
    expect(await resolve(app, orgB.orgId, p.id)).toBe(404);
    expect(await resolve(app, orgA.orgId, randomUUID())).toBe(404);
    expect(await resolve(app, orgA.orgId, 'not-a-uuid')).toBe(404);

    // a write that bypasses the service is not seen: the answer comes from memory, not from a read per request
    await app.dataSource.query(`UPDATE personas SET content = 'sneaky' WHERE id = $1`, [p.id]);
    expect(await resolve(app, orgA.orgId, p.id)).toEqual({ version: 1, content: 'first' });

    await orgA.call('PATCH', `/v1/personas/${p.id}`, { content: 'second' });
    expect(await resolve(app, orgA.orgId, p.id)).toEqual({ version: 2, content: 'second' });
    await orgA.call('PATCH', `/v1/personas/${p.id}`, { name: 'Renamed' });
    expect(await resolve(app, orgA.orgId, p.id)).toEqual({ version: 2, content: 'second' });

    await orgA.call('DELETE', `/v1/personas/${p.id}`);
    expect(await resolve(app, orgA.orgId, p.id)).toBe(404);
  });

  it('resolveForRequest in a second server process follows changes made in the first', async () => {
    // a second server on the same database: with DATABASE_URL the real one, else through the embedded one's
    // socket (the way a CLI run reaches it), with a small pool to stay under the socket's connection limit
    const second = await createTestApp(process.env.DATABASE_URL ? {} : { DATABASE_URL: app.db.url, DB_POOL_SIZE: '2' });
    try {
      const { orgId, call } = await newOrg();
      const { body: p } = await call('POST', '/v1/personas', { name: 'Shared', content: 'one' });
      expect(await resolve(second, orgId, p.id)).toEqual({ version: 1, content: 'one' });

      await call('PATCH', `/v1/personas/${p.id}`, { content: 'two' });
      const afterPatch = await eventually(() => resolve(second, orgId, p.id), (v) => v !== 404 && v.version === 2);
      expect(afterPatch).toEqual({ version: 2, content: 'two' });

      await call('DELETE', `/v1/personas/${p.id}`);
      expect(await eventually(() => resolve(second, orgId, p.id), (v) => v === 404)).toBe(404);
    } finally {
      await second.close();
    }
  });
});
