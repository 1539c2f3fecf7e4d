import { ChildProcess, spawn } from 'node:child_process';
import { createHmac, createSign, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { KeysService } from '../../src/keys/keys.service';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createToken, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { CLI, cliEnvFor, NODE, runCli } from '../support/run-cli';

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A JWT made by hand: the header says whatever the attack needs, the signature is an HMAC over it. */
function hmacToken(header: Record<string, unknown>, payload: Record<string, unknown>, secret = TEST_JWT_SECRET, hash = 'sha256'): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

async function eventually(check: () => Promise<void>, withinMs = 1000): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** GET with a body, which fetch cannot send. */
function getWithBody(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const usedBy = (fake: FakeUpstream, secret: string) => fake.requests.filter((r) => r.headers.authorization === `Bearer ${secret}`).length;

describe('authentication, identity and upstream keys', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let orgId: string;
  let disabledToken: string;
  const claims = (over: Record<string, unknown> = {}) => ({ org_id: orgId, jti: randomUUID(), iat: now(), exp: now() + 600, ...over });

  beforeAll(async () => {
    fake = await startFakeUpstream();
    // every GET /v1/models goes upstream (the tests count which key was used)
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, MODELS_CACHE_MS: '0' });
    orgId = (await createOrg(app)).orgId;
    const disabled = await createOrg(app);
    disabledToken = disabled.token;
    await app.app.get(OrganizationsService).disable(disabled.orgId, cliActor());
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  const models = (headers: Record<string, string>) => fetch(`${app.url}/v1/models`, { headers });
  const bearer = (token: string, userId = 'someone@example.com') => ({ authorization: `Bearer ${token}`, 'x-user-id': userId });

  const refused: [string, () => Record<string, string>][] = [
    ['no Authorization header', () => ({ 'x-user-id': 'u1' })],
    ['a header that is not "Bearer <token>"', () => ({ authorization: `Token ${hmacToken({ alg: 'HS256' }, claims())}`, 'x-user-id': 'u1' })],
    ['an empty bearer', () => ({ authorization: 'Bearer ', 'x-user-id': 'u1' })],
    ['a garbage token', () => bearer('garbage.token.here')],
    ['a bad signature', () => bearer(hmacToken({ alg: 'HS256', typ: 'JWT' }, claims(), 'not-the-secret-not-the-secret-0123456789'))],
    ['alg none', () => bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`)],
    ['HS512', () => bearer(hmacToken({ alg: 'HS512', typ: 'JWT' }, claims(), TEST_JWT_SECRET, 'sha512'))],
    ['RS256 header over an HMAC signature', () => bearer(hmacToken({ alg: 'RS256', typ: 'JWT' }, claims()))],
    [
      'RS256 signed with an RSA key',
      () => {
        const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        const input = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims())}`;
        return bearer(`${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`);
      },
    ],
    ['an expired token', () => bearer(hmacToken({ alg: 'HS256' }, claims({ iat: now() - 7200, exp: now() - 3600 })))],
    ['no exp', () => bearer(hmacToken({ alg: 'HS256' }, { org_id: orgId, jti: randomUUID(), iat: now() }))],
    ['no jti', () => bearer(hmacToken({ alg: 'HS256' }, { org_id: orgId, iat: now(), exp: now() + 600 }))],
    ['a disabled organization', () => bearer(disabledToken)],
    ['an unknown organization', () => bearer(hmacToken({ alg: 'HS256' }, claims({ org_id: randomUUID() })))],
  ];

  it.each(refused)('401 for %s, and the token is not echoed', async (_name, headers) => {
    const h = headers();
    const res = await models(h);
    const text = await res.text();
    expect(res.status).toBe(401);
    expect(JSON.parse(text).error).toMatchObject({ type: 'authentication_error' });
    const token = h.authorization?.split(' ')[1];
    if (token) expect(text).not.toContain(token);
  });

  it('a correctly signed token with the same claims passes (so the cases above fail for their flaw)', async () => {
    const res = await models(bearer(hmacToken({ alg: 'HS256', typ: 'JWT' }, claims())));
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).error.code).toBe('no_api_key');
  });

  it('a malformed JSON body without a token is 401; with a token it is 400', async () => {
    const noToken = await getWithBody(`${app.url}/v1/models`, { 'x-user-id': 'u1' }, '{"model": ');
    expect(noToken.status).toBe(401);
    const withToken = await getWithBody(`${app.url}/v1/models`, bearer(hmacToken({ alg: 'HS256' }, claims())), '{"model": ');
    expect(withToken.status).toBe(400);
    expect(JSON.parse(withToken.text).error.type).toBe('invalid_request_error');
  });

  it('a token revoked with `jwt revoke` is refused by the running server within a second', async () => {
    const { token, jti } = await createToken(app, orgId);
    expect((await models(bearer(token))).status).toBe(403);
    const run = await runCli(['jwt', 'revoke', jti], cliEnvFor(app));
    expect(run.code).toBe(0);
    await eventually(async () => {
      const res = await models(bearer(token));
      expect(res.status).toBe(401);
      expect(((await res.json()) as any).error.type).toBe('authentication_error');
    });
  });

  it('X-User-ID: missing or empty is 422 missing_user_id; control characters or over 256 characters is 422 invalid_user_id', async () => {
    const token = hmacToken({ alg: 'HS256' }, claims());
    const cases: [Record<string, string>, number, string | undefined][] = [
      [{}, 422, 'missing_user_id'],
      [{ 'x-user-id': '' }, 422, 'missing_user_id'],
      [{ 'x-user-id': 'alice\tbob' }, 422, 'invalid_user_id'],
      [{ 'x-user-id': 'u'.repeat(257) }, 422, 'invalid_user_id'],
      [{ 'x-user-id': 'u'.repeat(256) }, 403, 'no_api_key'],
    ];
    for (const [headers, status, code] of cases) {
      const res = await models({ authorization: `Bearer ${token}`, ...headers });
      const text = await res.text();
      expect(res.status, JSON.stringify(headers).slice(0, 40)).toBe(status);
      expect(JSON.parse(text).error).toMatchObject({ type: status === 422 ? 'invalid_request_error' : 'permission_error', code });
      expect(text).not.toContain(token);
    }
  });

  it('a token pinned to a user refuses another X-User-ID with 403 user_mismatch', async () => {
    const { token } = await createToken(app, orgId, { userId: 'pinned@example.com' });
    const other = await models(bearer(token, 'other@example.com'));
    expect(other.status).toBe(403);
    expect(((await other.json()) as any).error).toMatchObject({ type: 'permission_error', code: 'user_mismatch' });
    expect((await models(bearer(token, 'pinned@example.com'))).status).toBe(403); // past identity: no key
  });

  it('a user seen for the first time is recorded in its organization', async () => {
    const org = await createOrg(app);
    const externalId = `first-seen-${randomUUID()}`;
    const res = await api(app, org.token, externalId)('GET', '/v1/models');
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('no_api_key');
    expect(res.text).not.toContain(org.token);
    const rows = await app.dataSource.query('SELECT organization_id FROM users WHERE external_id = $1', [externalId]);
    expect(rows).toEqual([{ organization_id: org.orgId }]);
  });

  it("the user's own key beats the organization's; revoking it falls back to the organization key at once", async () => {
    const org = await createOrg(app);
    const alice = await createUser(app, org.orgId);
    const orgSecret = `sk-org-${randomUUID()}`;
    const aliceSecret = `sk-alice-${randomUUID()}`;
    await createKey(app, org.orgId, orgSecret, { baseUrl: fake.url });
    const aliceKey = await createKey(app, org.orgId, aliceSecret, { userId: alice.id, baseUrl: fake.url });

    const asAlice = api(app, org.token, alice.external_id);
    const first = await asAlice('GET', '/v1/models');
    expect(first.status).toBe(200);
    expect(first.headers.get('x-key-source')).toBe('user');
    expect(usedBy(fake, aliceSecret)).toBe(1);

    const asBob = await api(app, org.token, `bob-${randomUUID()}`)('GET', '/v1/models');
    expect(asBob.status).toBe(200);
    expect(asBob.headers.get('x-key-source')).toBe('organization');
    expect(usedBy(fake, orgSecret)).toBe(1);

    await app.app.get(KeysService).revoke(aliceKey.id, cliActor());
    const after = await asAlice('GET', '/v1/models');
    expect(after.status).toBe(200);
    expect(after.headers.get('x-key-source')).toBe('organization');
    expect(usedBy(fake, aliceSecret)).toBe(1);
    expect(usedBy(fake, orgSecret)).toBe(2);
  });

  it.skipIf(!process.env.DATABASE_URL)('a second server process sees a key revoked through the first within a second', async () => {
    const second = await createTestApp({ OPENAI_BASE_URL: fake.url });
    try {
      const org = await createOrg(app);
      const secret = `sk-shared-${randomUUID()}`;
      const key = await createKey(app, org.orgId, secret, { baseUrl: fake.url });
      const viaSecond = api(second, org.token, 'replica-user');
      expect((await viaSecond('GET', '/v1/models')).status).toBe(200); // the second process has the key cached now
      await app.app.get(KeysService).revoke(key.id, cliActor());
      await eventually(async () => {
        const res = await viaSecond('GET', '/v1/models');
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('no_api_key');
      });
      // until the change arrived the cached key may have served a call; from then on it is never sent again
      const sent = usedBy(fake, secret);
      expect((await viaSecond('GET', '/v1/models')).status).toBe(403);
      expect(usedBy(fake, secret)).toBe(sent);
    } finally {
      await second.close();
    }
  });

  it('a stored key is encrypted at rest; only its last four characters are kept in clear', async () => {
    const org = await createOrg(app);
    const secret = `sk-at-rest-${randomUUID()}`;
    const key = await createKey(app, org.orgId, secret, { baseUrl: fake.url });
    const [row] = await app.dataSource.query('SELECT encrypted_key, last4 FROM api_keys WHERE id = $1', [key.id]);
    const stored = row.encrypted_key as Buffer;
    expect(row.last4).toBe(secret.slice(-4));
    expect(stored.includes(Buffer.from(secret.slice(0, -4)))).toBe(false);
    expect(stored.toString('latin1')).not.toContain(secret.slice(3, 15));
    const [text] = await app.dataSource.query("SELECT encode(encrypted_key, 'escape') AS e, encode(encrypted_key, 'base64') AS b FROM api_keys WHERE id = $1", [key.id]);
    expect(text.e).not.toContain(secret.slice(3, 15));
    expect(text.b).not.toContain(Buffer.from(secret).toString('base64').slice(0, 12));
  });

  it('a tampered ciphertext is refused and never forwarded', async () => {
    // (a) a flipped byte
    const flipped = await createOrg(app);
    const flippedSecret = `sk-flipped-${randomUUID()}`;
    const flippedKey = await createKey(app, flipped.orgId, flippedSecret, { baseUrl: fake.url });
    const [row] = await app.dataSource.query('SELECT encrypted_key FROM api_keys WHERE id = $1', [flippedKey.id]);
    const bytes = Buffer.from(row.encrypted_key as Buffer);
    bytes[bytes.length - 1] ^= 0x01;
    await app.dataSource.query('UPDATE api_keys SET encrypted_key = $1 WHERE id = $2', [bytes, flippedKey.id]);

    // (b) another row's valid ciphertext copied over (the associated data binds it to its own row)
    const victim = await createOrg(app);
    const thief = await createOrg(app);
    const victimSecret = `sk-victim-${randomUUID()}`;
    const thiefSecret = `sk-thief-${randomUUID()}`;
    const victimKey = await createKey(app, victim.orgId, victimSecret, { baseUrl: fake.url });
    const thiefKey = await createKey(app, thief.orgId, thiefSecret, { baseUrl: fake.url });
    await app.dataSource.query('UPDATE api_keys SET encrypted_key = (SELECT encrypted_key FROM api_keys WHERE id = $1) WHERE id = $2', [
      victimKey.id,
      thiefKey.id,
    ]);

    // (c) a tampered user key with a sound organization key next to it
    const mixed = await createOrg(app);
    const carol = await createUser(app, mixed.orgId);
    const mixedOrgSecret = `sk-mixed-org-${randomUUID()}`;
    const carolSecret = `sk-carol-${randomUUID()}`;
    await createKey(app, mixed.orgId, mixedOrgSecret, { baseUrl: fake.url });
    const carolKey = await createKey(app, mixed.orgId, carolSecret, { userId: carol.id, baseUrl: fake.url });
    await app.dataSource.query('UPDATE api_keys SET encrypted_key = (SELECT encrypted_key FROM api_keys WHERE id = $1) WHERE id = $2', [
      victimKey.id,
      carolKey.id,
    ]);

    for (const org of [flipped, thief]) {
      const res = await api(app, org.token, 'tamper-user')('GET', '/v1/models');
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ type: 'permission_error', code: 'no_api_key' });
    }
    const asCarol = await api(app, mixed.token, carol.external_id)('GET', '/v1/models');
    expect(asCarol.status).toBe(200);
    expect(asCarol.headers.get('x-key-source')).toBe('organization');
    expect(usedBy(fake, mixedOrgSecret)).toBe(1);

    for (const secret of [flippedSecret, victimSecret, thiefSecret, carolSecret]) {
      expect(usedBy(fake, secret)).toBe(0);
      expect(app.logs.join('\n')).not.toContain(secret);
    }
  });

  it('GET /health needs no token', async () => {
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('the built server on a fresh DATA_DIR (no DATABASE_URL)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'proxy-fresh-'));
  const env = { DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  let child: ChildProcess | undefined;

  async function start(): Promise<string> {
    const port = await freePort();
    child = spawn(NODE, [join(process.cwd(), 'dist/src/main.js')], {
      env: { PATH: process.env.PATH, ...env, PORT: String(port), HOST: '127.0.0.1' },
      stdio: 'ignore',
    });
    const url = `http://127.0.0.1:${port}`;
    const exited = new Promise<never>((_, reject) => child!.once('exit', (code) => reject(new Error(`server exited with ${code}`))));
    const ready = (async () => {
      for (;;) {
        try {
          if ((await fetch(`${url}/health`)).status === 200) return url;
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    return Promise.race([ready, exited]);
  }

  async function stop(): Promise<void> {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }

  afterAll(async () => {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers /health, and keeps organizations and secrets across a restart', async () => {
    expect(CLI).toMatch(/dist\/src\/cli\.js$/);
    const url = await start();
    const health = await fetch(`${url}/health`);
    expect(await health.json()).toEqual({ status: 'ok', database: 'ok' });

    const name = `fresh-${randomUUID()}`;
    const org = await runCli(['org', 'create', name, '--json'], env);
    expect(org.code).toBe(0);
    const jwt = await runCli(['jwt', 'create', '--org-id', org.json.id], env);
    expect(jwt.code).toBe(0);
    const token = jwt.stdout.trim();
    const before = await api({ url }, token, 'fresh-user')('GET', '/v1/models');
    expect(before.status).toBe(403); // authenticated with the generated secret; no key yet
    expect(before.text).not.toContain(token);

    await stop();
    const again = await start();
    expect((await fetch(`${again}/health`)).status).toBe(200);
    const list = await runCli(['org', 'list', '--json'], env);
    expect(list.code).toBe(0);
    expect(list.json.data).toContainEqual(expect.objectContaining({ id: org.json.id, name }));
    const after = await api({ url: again }, token, 'fresh-user')('GET', '/v1/models');
    expect(after.status).toBe(403);
    expect(after.body.error.code).toBe('no_api_key');
  }, 90_000);
});
