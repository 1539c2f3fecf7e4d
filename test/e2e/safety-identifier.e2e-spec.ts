import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { safetyIdentifierOf } from '../../src/proxy/proxy-body';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { createKey, createOrg } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';

const HEX32 = /^[0-9a-f]{32}$/;

describe('safety_identifier: a keyed hash of the organization and end user, added to model calls', () => {
  let fake: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  afterEach(() => fake.reset());

  /** An organization with its own key on the fake upstream, safety identifiers on or off. */
  async function org(on: boolean) {
    const o = await createOrg(app);
    const apiKey = `sk-safety-${randomBytes(8).toString('hex')}`;
    await createKey(app, o.orgId, apiKey, { baseUrl: fake.url });
    if (on) await app.app.get(OrganizationsService).changePrivacy(o.orgId, { safetyIdentifier: true }, cliActor());
    const client = (userId: string) => new OpenAI({ baseURL: `${app.url}/v1`, apiKey: o.token, defaultHeaders: { 'X-User-ID': userId }, maxRetries: 0 });
    /** what the upstream received from this organization, in order */
    const received = () => fake.requests.filter((r) => r.headers.authorization === `Bearer ${apiKey}`);
    const raw = (path: string, userId: string, body: string) =>
      fetch(`${app.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${o.token}`, 'x-user-id': userId, 'content-type': 'application/json' }, body });
    return { ...o, client, received, raw };
  }

  it('adds the same identifier for the same user, a different one per user and per organization, made with the server secret', async () => {
    const a = await org(true);
    const b = await org(true);
    const user = `user-${randomUUID()}@example.com`;
    const other = `user-${randomUUID()}@example.com`;

    await a.client(user).responses.create({ model: 'gpt-4o-mini', input: 'hello' });
    await a.client(user).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    await a.client(other).responses.create({ model: 'gpt-4o-mini', input: 'hello' });
    await b.client(user).responses.create({ model: 'gpt-4o-mini', input: 'hello' });

    const [first, second, ofOther] = a.received().map((r) => r.body.safety_identifier);
    const inB = b.received()[0].body.safety_identifier;
    expect(first).toMatch(HEX32);
    expect(second).toBe(first);
    expect(ofOther).toMatch(HEX32);
    expect(ofOther).not.toBe(first);
    expect(inB).toMatch(HEX32);
    expect(inB).not.toBe(first);

    // a function of the server secret, the organization and the user only (so the same after a restart), and not a
    // plain hash anyone could recompute from the ids
    expect(first).toBe(safetyIdentifierOf(TEST_JWT_SECRET, a.orgId, user));
    const input = JSON.stringify([a.orgId, user]);
    expect(first).not.toBe(createHash('sha256').update(input).digest('hex').slice(0, 32));
    expect(first).not.toBe(createHmac('sha256', TEST_JWT_SECRET).update(input).digest('hex').slice(0, 32));
    expect(safetyIdentifierOf('another-secret-0123456789abcdef-0123456789', a.orgId, user)).not.toBe(first);
  });

  it('keeps the client bytes and adds only the member; a client-sent identifier (even null) is left alone', async () => {
    const a = await org(true);
    const user = `user-${randomUUID()}`;
    const sent = '{ "model" : "gpt-4o-mini",\n  "input": "caf\\u00e9" ,"metadata":{"k":"v"} }';
    expect((await a.raw('/v1/responses', user, sent)).status).toBe(200);
    const got = a.received()[0].rawBody;
    expect(got).toBe(`{"safety_identifier":"${safetyIdentifierOf(TEST_JWT_SECRET, a.orgId, user)}",${sent.slice(1)}`);

    await a.client(user).responses.create({ model: 'gpt-4o-mini', input: 'hello', safety_identifier: 'client-choice' });
    expect(a.received()[1].body.safety_identifier).toBe('client-choice');
    expect((await a.raw('/v1/chat/completions', user, '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"safety_identifier":null}')).status).toBe(200);
    expect(a.received()[2].body).toHaveProperty('safety_identifier', null);
  });

  it('streamed calls carry it too (with the usage the proxy asks for), and relayed image generations', async () => {
    const a = await org(true);
    const user = `user-${randomUUID()}`;
    const expected = safetyIdentifierOf(TEST_JWT_SECRET, a.orgId, user);

    const stream = await a.client(user).chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }] });
    for await (const _chunk of stream) void _chunk;
    const chat = a.received()[0].body;
    expect(chat.safety_identifier).toBe(expected);
    expect(chat.stream_options).toEqual({ include_usage: true });

    const responses = await a.client(user).responses.create({ model: 'gpt-4o-mini', input: 'hello', stream: true });
    for await (const _event of responses) void _event;
    expect(a.received()[1].body.safety_identifier).toBe(expected);

    await a.client(user).images.generate({ model: 'dall-e-2', prompt: 'a lighthouse' });
    expect(a.received()[2].path).toBe('/v1/images/generations');
    expect(a.received()[2].body.safety_identifier).toBe(expected);
  });

  it('off: the body goes upstream byte for byte as the client sent it', async () => {
    const a = await org(false);
    const user = `user-${randomUUID()}`;
    const sent = '{ "model" : "gpt-4o-mini",\n  "input": "caf\\u00e9" ,"metadata":{"k":"v"} }';
    expect((await a.raw('/v1/responses', user, sent)).status).toBe(200);
    expect(a.received()[0].rawBody).toBe(sent);
    await a.client(user).images.generate({ model: 'dall-e-2', prompt: 'a lighthouse' });
    expect(a.received()[1].body).not.toHaveProperty('safety_identifier');
  });
});
