import { randomUUID } from 'node:crypto';
import { cliActor } from '../../src/audit/audit-actor';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { TokensService } from '../../src/auth/tokens.service';
import { UsersService } from '../../src/auth/users.service';
import { KeysService } from '../../src/keys/keys.service';
import type { RunningServer } from '../../src/server';

export interface TestOrg {
  orgId: string;
  name: string;
  token: string;
  jti: string;
}

/** A fresh organization (unique name) with a token; every test makes its own, so tests never depend on each other. */
export async function createOrg(app: RunningServer, opts: { name?: string; tokenUserId?: string; tokenScope?: string } = {}): Promise<TestOrg> {
  const org = await app.app.get(OrganizationsService).create(opts.name ?? `org-${randomUUID()}`, cliActor());
  const { token, jti } = await app.app.get(TokensService).create({ orgId: org.id, userId: opts.tokenUserId, scope: opts.tokenScope }, cliActor());
  return { orgId: org.id, name: org.name, token, jti };
}

export async function createUser(app: RunningServer, orgId: string, externalId = `user-${randomUUID()}@example.com`) {
  return app.app.get(UsersService).create(orgId, externalId, undefined, cliActor());
}

export async function createKey(
  app: RunningServer,
  orgId: string,
  apiKey: string,
  opts: { userId?: string; label?: string; baseUrl?: string } = {},
) {
  return app.app.get(KeysService).create({ orgId, apiKey, ...opts }, cliActor());
}

export async function createToken(app: RunningServer, orgId: string, opts: { userId?: string; expiresIn?: string; scope?: string } = {}) {
  return app.app.get(TokensService).create({ orgId, ...opts }, cliActor());
}

/** fetch against the app with the token and X-User-ID filled in. */
export function api(app: { url: string }, token: string | undefined, userId: string | undefined) {
  return async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const h: Record<string, string> = { ...headers };
    if (token !== undefined) h.authorization = `Bearer ${token}`;
    if (userId !== undefined) h['x-user-id'] = userId;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(`${app.url}${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, body: json, text };
  };
}
