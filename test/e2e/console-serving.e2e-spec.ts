import { existsSync, readdirSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppException } from '../../src/common/app-exception';
import { ConsoleController } from '../../src/console/console.controller';
import { ConsoleFiles, defaultConsoleDir } from '../../src/console/console-files';
import { createTestApp, TestApp } from '../support/create-test-app';
import { rawRequest } from '../support/raw-http';

const DIST = resolve(__dirname, '../../dist/console');

describe('the console at /console', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('is built into dist/console by npm run build', () => {
    expect(existsSync(join(DIST, 'index.html')), 'dist/console/index.html is missing: run npm run build').toBe(true);
    expect(defaultConsoleDir()).toBe(DIST);
  });

  it('answers index.html without a token, never cached, with a CSP that forbids inline scripts and other origins', async () => {
    for (const path of ['/console', '/console/', '/console/requests/req_abc123', '/console/sessions/session_x', '/console/personas/4b2a1c3e-0000-4000-8000-000000000000']) {
      const res = await fetch(`${app.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
      expect(csp).toContain("connect-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      const html = await res.text();
      expect(html).toContain('<div id="root"></div>');
      // every script is a file of the build: none inline
      expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    }
  });

  it('serves the hashed build assets as immutable for a year', async () => {
    const asset = readdirSync(join(DIST, 'assets')).find((f) => f.endsWith('.js'))!;
    const res = await fetch(`${app.url}/console/assets/${asset}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect((await res.text()).length).toBeGreaterThan(1000);
  });

  it('answers a missing file, or a path outside the build, with a 404 in the error envelope', async () => {
    for (const path of ['/console/assets/missing-0000.js', '/console/..%2f..%2fpackage.json', '/console/%2e%2e/%2e%2e/package.json', '/console/x/../../package.json']) {
      const res = await rawRequest(app.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(res.status, path).toBe(404);
      expect(res.body, path).toContain('"type":"not_found_error"');
    }
  });

  it('is not part of the API document', async () => {
    const doc = (await (await fetch(`${app.url}/docs-json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
  });

  it('leaves the API as it was: /v1 still wants a token', async () => {
    const res = await fetch(`${app.url}/v1/requests`);
    expect(res.status).toBe(401);
  });
});

describe('an installation without the console (API-only)', () => {
  it('answers /console with a clear 404 in the envelope', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-console-'));
    try {
      const controller = new ConsoleController(new ConsoleFiles(join(dir, 'console')));
      const req = { path: '/console/requests/req_x', method: 'GET' } as never;
      const err = await controller.any(req, {} as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppException);
      expect((err as AppException).status).toBe(404);
      expect((err as AppException).toBody().error).toMatchObject({ type: 'not_found_error', code: 'console_not_built' });
      expect((err as AppException).message).toContain('npm run build');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
