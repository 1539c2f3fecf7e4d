import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';

describe('health and docs', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('GET /health checks the database and needs no token', async () => {
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', database: 'ok' });
    expect(res.headers.get('x-request-id')).toMatch(/^req_[A-Za-z0-9_-]{24}$/);
  });

  it('serves the Swagger UI and the OpenAPI document with bearer and X-User-ID security', async () => {
    const ui = await fetch(`${app.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger');
    const doc: any = await (await fetch(`${app.url}/docs-json`)).json();
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes['X-User-ID']).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-User-ID' });
  });

  it('answers an unknown route with the error envelope', async () => {
    const res = await fetch(`${app.url}/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error).toMatchObject({ type: 'not_found_error' });
  });
});
