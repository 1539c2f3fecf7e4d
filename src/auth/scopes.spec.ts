import { Controller, ExecutionContext, Get } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import { AppException } from '../common/app-exception';
import { JwtAuthGuard } from './auth.guards';
import { RequestAuthenticator } from './request-authenticator';
import { RequireScope } from './require-scope.decorator';
import { DEFAULT_SCOPES, grantedScopes, parseScope, requireScope } from './scopes';

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err as AppException;
  }
  throw new Error('expected a refusal');
};

describe('parseScope (jwt create --scope)', () => {
  it('takes known words, in any order and spacing, and answers them once each in the canonical order', () => {
    expect(parseScope('read')).toEqual(['read']);
    expect(parseScope('  manage read  read ')).toEqual(['read', 'manage']);
    expect(parseScope('admin proxy')).toEqual(['proxy', 'admin']);
  });

  it('refuses unknown words, naming them, and an empty scope', () => {
    const unknown = refusal(() => parseScope('read write telepathy'));
    expect(unknown.status).toBe(400);
    expect(unknown.message).toContain("'write', 'telepathy'");
    expect(unknown.message).toContain('proxy, read, manage, admin');
    expect(refusal(() => parseScope('READ')).message).toContain("'READ'");
    expect(refusal(() => parseScope('   ')).message).toMatch(/at least one/);
  });
});

describe('grantedScopes (a presented token)', () => {
  it('a token without a scope claim has proxy read manage, never admin', () => {
    expect([...grantedScopes(undefined)]).toEqual(['proxy', 'read', 'manage']);
    expect(DEFAULT_SCOPES).not.toContain('admin');
  });

  it('unknown words grant nothing; an empty claim grants nothing', () => {
    expect([...grantedScopes('read telepathy')]).toEqual(['read']);
    expect([...grantedScopes('telepathy')]).toEqual([]);
    expect([...grantedScopes('')]).toEqual([]);
  });

  it('a missing scope is 403 insufficient_scope naming the scope needed', () => {
    const err = refusal(() => requireScope(grantedScopes('read'), 'manage'));
    expect(err.status).toBe(403);
    expect(err.toBody().error).toMatchObject({ type: 'permission_error', code: 'insufficient_scope' });
    expect(err.message).toContain("needs the 'manage' scope");
    expect(() => requireScope(grantedScopes(undefined), 'proxy')).not.toThrow();
  });
});

describe('JwtAuthGuard', () => {
  @RequireScope('read')
  @Controller('t')
  class Scoped {
    @Get('a')
    a() {}

    @RequireScope('manage')
    @Get('b')
    b() {}
  }

  @Controller('u')
  class Unscoped {
    @Get()
    c() {}
  }

  const seen: string[] = [];
  const auth = { verifyToken: (_h: unknown, scope: string) => (seen.push(scope), Promise.resolve({})) } as unknown as RequestAuthenticator;
  const guard = new JwtAuthGuard(new Reflector(), auth);
  const context = (cls: object, handler: (...args: unknown[]) => unknown) =>
    ({
      getClass: () => cls,
      getHandler: () => handler,
      switchToHttp: () => ({ getRequest: () => ({ method: 'GET', path: '/u', headers: {} }) }),
    }) as unknown as ExecutionContext;

  it("checks the handler's scope, else its controller's", async () => {
    await guard.canActivate(context(Scoped, Scoped.prototype.a));
    await guard.canActivate(context(Scoped, Scoped.prototype.b));
    expect(seen).toEqual(['read', 'manage']);
  });

  it('refuses a protected route that declares no scope, before looking at the token', async () => {
    seen.length = 0;
    const err = (await guard.canActivate(context(Unscoped, Unscoped.prototype.c)).catch((e: unknown) => e)) as AppException;
    expect(err).toBeInstanceOf(AppException);
    expect(err.status).toBe(403);
    expect(err.toBody().error.code).toBe('insufficient_scope');
    expect(err.message).toContain('declares no scope');
    expect(seen).toEqual([]);
  });
});
