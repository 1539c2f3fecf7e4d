import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';

// The OpenAPI document is what clients are generated from and what /docs lets people try: every answer must be
// typed (a generated client should get objects, not `unknown`) and every example must work when sent.

type Schema = Record<string, any>;
interface Operation {
  method: string;
  path: string;
  op: Record<string, any>;
}
interface BodyExample {
  name: string;
  value: unknown;
  /** what the document tells the reader about the example (e.g. which ids must be their own) */
  description: string;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function operations(doc: Schema): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
    for (const method of METHODS) if (item[method]) out.push({ method, path, op: item[method] });
  }
  return out;
}

const isTyped = (s: Schema | undefined): boolean =>
  !!s && (typeof s.$ref === 'string' || typeof s.type === 'string' || Array.isArray(s.allOf) || Array.isArray(s.oneOf) || Array.isArray(s.anyOf));

function resolveRef(doc: Schema, s: Schema): Schema {
  if (typeof s.$ref !== 'string') return s;
  const name = s.$ref.replace('#/components/schemas/', '');
  const target = doc.components?.schemas?.[name];
  if (!target) throw new Error(`dangling $ref ${s.$ref}`);
  return resolveRef(doc, target);
}

/** The examples of a request body, as Swagger UI offers them (the first is its default). */
function bodyExamples(op: Schema): BodyExample[] {
  const media = op.requestBody?.content?.['application/json'];
  if (!media) return [];
  if (media.examples) {
    return Object.entries<Schema>(media.examples).map(([name, ex]) => ({ name, value: ex.value, description: `${ex.summary ?? ''} ${ex.description ?? ''}` }));
  }
  const value = media.example ?? media.schema?.example;
  return value === undefined ? [] : [{ name: 'example', value, description: '' }];
}

/** Where the value departs from the schema (a small subset of JSON Schema: what the document uses). */
function mismatches(doc: Schema, value: unknown, schema: Schema, at: string): string[] {
  const s = resolveRef(doc, schema);
  if (value === null) return s.nullable ? [] : [`${at}: null, not nullable`];
  if (Array.isArray(s.allOf)) return s.allOf.flatMap((part: Schema) => mismatches(doc, value, part, at));
  if (s.enum && !s.enum.includes(value)) return [`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(s.enum)}`];
  switch (s.type) {
    case 'string':
      return typeof value === 'string' ? [] : [`${at}: not a string`];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: not a boolean`];
    case 'integer':
      return Number.isInteger(value) ? [] : [`${at}: not an integer`];
    case 'number':
      return typeof value === 'number' ? [] : [`${at}: not a number`];
    case 'array':
      if (!Array.isArray(value)) return [`${at}: not an array`];
      return s.items ? value.flatMap((v, i) => mismatches(doc, v, s.items, `${at}[${i}]`)) : [];
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return [`${at}: not an object`];
      const props: Record<string, Schema> = s.properties ?? {};
      const out = (s.required ?? []).filter((k: string) => !(k in value)).map((k: string) => `${at}.${k}: required, missing`);
      for (const [k, v] of Object.entries(value)) {
        if (props[k]) out.push(...mismatches(doc, v, props[k], `${at}.${k}`));
        else if (typeof s.additionalProperties === 'object') out.push(...mismatches(doc, v, s.additionalProperties, `${at}.${k}`));
        else if (s.additionalProperties !== true) out.push(`${at}.${k}: not in the schema`);
      }
      return out;
    }
    default:
      return [];
  }
}

describe('the OpenAPI document', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let doc: Schema;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
    const res = await fetch(`${app.url}/docs-json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Schema;
  });

  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('types every success answer and parameter with a schema, and every error answer with the error envelope', () => {
    const missing: string[] = [];
    const errors: string[] = [];
    for (const { method, path, op } of operations(doc)) {
      for (const [status, response] of Object.entries<Schema>(op.responses ?? {})) {
        const where = `${method.toUpperCase()} ${path} ${status}`;
        const content: Record<string, Schema> = response.content ?? {};
        if (status === '204') {
          if (Object.keys(content).length) missing.push(`${where}: a 204 has no body`);
          continue;
        }
        if (status.startsWith('2')) {
          if (!Object.keys(content).length) missing.push(`${where}: no content`);
          for (const [type, media] of Object.entries(content)) {
            if (!isTyped(media.schema)) missing.push(`${where} ${type}: ${JSON.stringify(media.schema ?? null)}`);
            else if (media.schema.$ref && !isTyped(resolveRef(doc, media.schema))) missing.push(`${where} ${type}: ${media.schema.$ref} is untyped`);
          }
        } else if (Number(status) >= 400) {
          const schema = content['application/json']?.schema;
          if (schema?.$ref !== '#/components/schemas/ErrorEnvelope') errors.push(`${where}: ${JSON.stringify(schema ?? null)}`);
        }
      }
    }
    for (const { method, path, op } of operations(doc)) {
      for (const param of op.parameters ?? []) if (!isTyped(param.schema)) missing.push(`${method.toUpperCase()} ${path} parameter ${param.name}: ${JSON.stringify(param.schema ?? null)}`);
    }
    expect(missing).toEqual([]);
    expect(errors).toEqual([]);
    expect(resolveRef(doc, { $ref: '#/components/schemas/ErrorEnvelope' }).required).toEqual(['error']);
  });

  it('describes the OpenAI objects of the proxy routes, open to fields OpenAI adds', () => {
    const find = (method: string, path: string) => resolveRef(doc, doc.paths[path][method].responses['200'].content['application/json'].schema);
    for (const [method, path, field] of [
      ['post', '/v1/responses', 'output'],
      ['get', '/v1/responses/{response_id}', 'output'],
      ['post', '/v1/chat/completions', 'choices'],
      ['get', '/v1/models', 'data'],
    ]) {
      const schema = find(method, path);
      expect(schema.type, path).toBe('object');
      expect(schema.additionalProperties, path).toBe(true);
      expect(schema.properties[field], path).toBeDefined();
    }
  });

  it('gives every request body an example, and the default one of the proxy routes names no persona', () => {
    for (const { method, path, op } of operations(doc)) {
      if (!op.requestBody) continue;
      const examples = bodyExamples(op);
      expect(examples.length, `${method} ${path}`).toBeGreaterThan(0);
      if (path === '/v1/responses' || path === '/v1/chat/completions') expect(examples[0].value).not.toHaveProperty('persona_id');
    }
  });

  it('tells how to make a token with a command that exists', () => {
    const text: string = doc.info.description;
    expect(text).toContain('npm run -s cli -- jwt create --org-id <org-id>');
    expect(text).toContain('openai-proxy jwt create --org-id <org-id>');
    expect(text).not.toMatch(/`cli jwt create`/);
  });

  it('every example works when sent, and every answer fits its schema', { timeout: 60_000 }, async () => {
    // every scope, so that every route answers
    const org = await createOrg(app, { tokenScope: 'proxy read manage admin' });
    const externalId = `openapi-user-${Date.now()}@example.com`;
    await createUser(app, org.orgId, externalId);
    await createKey(app, org.orgId, 'sk-openapi-org-key-3333', { baseUrl: fake.url });
    const call = api(app, org.token, externalId);

    // the caller's own objects, which a reader puts in place of the ids the document shows
    const persona = await call('POST', '/v1/personas', { name: 'Docs persona', content: 'You answer briefly.' });
    expect(persona.status).toBe(201);
    const exchange = await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'Hello' });
    expect(exchange.status).toBe(200);
    const config = await call('POST', '/v1/analysis/configs', { name: 'Docs sentiment', analysis_type: 'sentiment' });
    expect(config.status).toBe(201);
    const own: Record<string, string> = {
      persona_id: persona.body.id,
      request_id: exchange.headers.get('x-request-id')!,
      response_id: exchange.body.id,
      session_id: exchange.headers.get('x-session-id')!,
      config_id: config.body.id,
      user_id: externalId,
    };
    const pathOf = (path: string) =>
      path.replace(/\{(\w+)\}/g, (_m, name: string) => {
        if (name !== 'id') return own[name];
        return path.startsWith('/v1/analysis/configs') ? own.config_id : own.persona_id;
      });
    // only the ids the example's own text says must be the reader's are replaced; everything else is sent as shown
    const withOwnIds = (value: unknown, description: string): unknown => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
      const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
      for (const field of Object.keys(own)) if (field in out && description.includes(field)) out[field] = own[field];
      return out;
    };

    const failures: string[] = [];
    const sent: string[] = [];
    const check = async (method: string, path: string, op: Schema, body: unknown, label: string) => {
      const res = await call(method.toUpperCase(), pathOf(path), body);
      const where = `${method.toUpperCase()} ${path}${label}`;
      sent.push(where);
      if (res.status < 200 || res.status > 299) {
        failures.push(`${where}: ${res.status} ${res.text.slice(0, 300)}`);
        return;
      }
      const media = op.responses?.[String(res.status)]?.content?.['application/json'];
      if (!res.headers.get('content-type')?.startsWith('application/json')) return;
      if (!media?.schema) failures.push(`${where}: answered ${res.status}, which the document does not list`);
      else failures.push(...mismatches(doc, res.body, media.schema, where));
    };

    const ops = operations(doc);
    // writes first (the ratings they make are read later), deletions last
    for (const { method, path, op } of ops.filter((o) => o.op.requestBody)) {
      for (const example of bodyExamples(op)) await check(method, path, op, withOwnIds(example.value, example.description), ` (example ${example.name})`);
    }
    for (const { method, path, op } of ops.filter((o) => !o.op.requestBody && o.method !== 'delete')) await check(method, path, op, undefined, '');
    for (const { method, path, op } of ops.filter((o) => o.method === 'delete')) await check(method, path, op, undefined, '');

    expect(failures).toEqual([]);
    expect(sent.length).toBe(ops.length - ops.filter((o) => o.op.requestBody).length + ops.flatMap((o) => bodyExamples(o.op)).length);
    expect(sent).toEqual(expect.arrayContaining(['POST /v1/responses (example persona)', 'POST /v1/analysis (example saved)', 'GET /v1/limits']));
  });
});
