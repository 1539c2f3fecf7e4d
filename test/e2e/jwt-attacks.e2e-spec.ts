import fc from 'fast-check';
import { createHmac, generateKeyPairSync, createSign, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { createOrg, createToken } from '../support/factories';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { TokensService } from '../../src/auth/tokens.service';
import { startFakeUpstream, FakeUpstream } from '../support/fake-upstream';

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function sign(header: Record<string, unknown>, payload: Record<string, unknown>, secret = TEST_JWT_SECRET, hmac = 'sha256'): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hmac, secret).update(input).digest('base64url')}`;
}

describe('JWT attacks are refused with 401, never 500 (RFC 8725)', () => {
  let app: TestApp;
  let issApp: TestApp;
  let fake: FakeUpstream;
  let orgId: string;
  let validToken: string;
  let disabledOrgToken: string;
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({ org_id: orgId, jti: randomUUID(), iat: now(), exp: now() + 600, ...over });

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    issApp = await createTestApp({ OPENAI_BASE_URL: fake.url, JWT_ISSUER: 'https://issuer.example', JWT_AUDIENCE: 'proxy-api' });
    const org = await createOrg(app);
    orgId = org.orgId;
    validToken = org.token;
    const disabled = await createOrg(app);
    disabledOrgToken = disabled.token;
    await app.app.get(OrganizationsService).disable(disabled.orgId, cliActor());
  });
  afterAll(async () => {
    await issApp?.close();
    await app?.close();
    await fake?.close();
  });

  const call = (a: TestApp, token: string | undefined, path = '/v1/models', extra: Record<string, string> = {}) =>
    fetch(`${a.url}${path}`, {
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), 'x-user-id': 'attacker@example.com', ...extra },
    });

  const cases: [string, () => string][] = [
    ['alg none, no signature', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`],
    ['alg none with a signature', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.${createHmac('sha256', TEST_JWT_SECRET).update('x').digest('base64url')}`],
    ['HS512 header signed with the secret', () => sign({ alg: 'HS512', typ: 'JWT' }, claims(), TEST_JWT_SECRET, 'sha512')],
    ['HS384 header signed with the secret', () => sign({ alg: 'HS384', typ: 'JWT' }, claims(), TEST_JWT_SECRET, 'sha384')],
    [
      'RS256 token with its own key',
      () => {
        const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        const input = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims())}`;
        return `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`;
      },
    ],
    ['signed with another secret', () => sign({ alg: 'HS256', typ: 'JWT' }, claims(), 'another-secret-another-secret-0123456789')],
    ['missing exp', () => sign({ alg: 'HS256' }, { org_id: orgId, jti: randomUUID(), iat: now() })],
    ['missing jti', () => sign({ alg: 'HS256' }, { org_id: orgId, iat: now(), exp: now() + 600 })],
    ['missing org_id', () => sign({ alg: 'HS256' }, { jti: randomUUID(), iat: now(), exp: now() + 600 })],
    ['org_id not a UUID', () => sign({ alg: 'HS256' }, claims({ org_id: "1' OR '1'='1" }))],
    ['expired beyond the skew', () => sign({ alg: 'HS256' }, claims({ iat: now() - 7200, exp: now() - 120 }))],
    ['nbf in the future', () => sign({ alg: 'HS256' }, claims({ nbf: now() + 3600 }))],
    ['iat far in the future', () => sign({ alg: 'HS256' }, claims({ iat: now() + 86400, exp: now() + 90000 }))],
    ['jku header', () => sign({ alg: 'HS256', jku: 'http://127.0.0.1:1/jwks.json' }, claims())],
    ['jwk header', () => sign({ alg: 'HS256', jwk: { kty: 'oct', k: b64('x') } }, claims())],
    ['x5u header', () => sign({ alg: 'HS256', x5u: 'http://127.0.0.1:1/cert.pem' }, claims())],
    ['unknown organization', () => sign({ alg: 'HS256' }, claims({ org_id: randomUUID() }))],
    ['disabled organization', () => disabledOrgToken],
    ['garbage', () => 'not-a-token'],
    ['two parts', () => `${b64({ alg: 'HS256' })}.${b64(claims())}`],
    ['header not JSON', () => `${b64('{{{')}.${b64(claims())}.sig`],
  ];

  it.each(cases)('%s → 401', async (_name, make) => {
    const res = await call(app, make());
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { type: string } };
    expect(body.error.type).toBe('authentication_error');
  });

  it('a revoked jti → 401', async () => {
    const { token, jti } = await createToken(app, orgId);
    expect((await call(app, token)).status).not.toBe(401);
    await app.app.get(TokensService).revoke(jti, cliActor());
    expect((await call(app, token)).status).toBe(401);
  });

  it('a token in the query string is not accepted', async () => {
    const res = await call(app, undefined, `/v1/models?access_token=${validToken}&token=${validToken}`);
    expect(res.status).toBe(401);
  });

  it('the valid token passes the guard (the attacks fail for their flaw, not for the set-up)', async () => {
    const res = await call(app, validToken);
    expect(res.status).toBe(403); // no upstream key configured: past authentication
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('no_api_key');
  });

  it('iss and aud are enforced when configured', async () => {
    const org = await createOrg(issApp);
    const ok = sign({ alg: 'HS256' }, { ...claims(), org_id: org.orgId, iss: 'https://issuer.example', aud: 'proxy-api' });
    const wrongIss = sign({ alg: 'HS256' }, { ...claims(), org_id: org.orgId, iss: 'https://evil.example', aud: 'proxy-api' });
    const noAud = sign({ alg: 'HS256' }, { ...claims(), org_id: org.orgId, iss: 'https://issuer.example' });
    expect((await call(issApp, ok)).status).toBe(403);
    expect((await call(issApp, wrongIss)).status).toBe(401);
    expect((await call(issApp, noAud)).status).toBe(401);
  });

  it('byte-level mutations of a valid token never give a 2xx or a 5xx', async () => {
    const { token } = await createToken(app, orgId);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(token.length - 1), fc.integer({ min: 0x21, max: 0x7e })), { minLength: 1, maxLength: 4 }),
        async (mutations) => {
          const chars = token.split('');
          for (const [pos, code] of mutations) chars[pos] = String.fromCharCode(code);
          const mutated = chars.join('');
          fc.pre(mutated !== token);
          const res = await call(app, mutated);
          await res.arrayBuffer();
          expect(res.status).toBe(401);
        },
      ),
      { numRuns: 150 },
    );
  });
});
