import { METHOD_METADATA } from '@nestjs/common/constants';
import { DECORATORS } from '@nestjs/swagger';
import type { Scope } from './scopes';

export const REQUIRED_SCOPE = 'requiredScope';
export const SCOPE_EXTENSION = 'x-required-scope';

type Handler = (...args: unknown[]) => unknown;

/**
 * The scope a route needs (see scopes.ts). On a controller it covers the handlers that declare none of their own;
 * on a handler, put it above `@ApiOperation` so the OpenAPI description it adds to is already there. A protected
 * route without one is refused to every token (JwtAuthGuard), so a new route cannot be left open by omission.
 */
export function RequireScope(scope: Scope): ClassDecorator & MethodDecorator {
  return (target: object, _key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor) {
      Reflect.defineMetadata(REQUIRED_SCOPE, scope, descriptor.value as Handler);
      document(descriptor.value as Handler, scope);
      return;
    }
    Reflect.defineMetadata(REQUIRED_SCOPE, scope, target);
    const proto = (target as { prototype: Record<string, unknown> }).prototype;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const handler = Object.getOwnPropertyDescriptor(proto, name)?.value as Handler | undefined;
      if (name === 'constructor' || typeof handler !== 'function' || !Reflect.hasMetadata(METHOD_METADATA, handler)) continue;
      if (!Reflect.hasOwnMetadata(REQUIRED_SCOPE, handler)) document(handler, scope);
    }
  };
}

/** Shows the scope in the OpenAPI document: the `x-required-scope` extension and a line of the operation's description. */
function document(handler: Handler, scope: Scope): void {
  const extensions = (Reflect.getMetadata(DECORATORS.API_EXTENSION, handler) as Record<string, unknown> | undefined) ?? {};
  Reflect.defineMetadata(DECORATORS.API_EXTENSION, { ...extensions, [SCOPE_EXTENSION]: scope }, handler);
  const operation = (Reflect.getMetadata(DECORATORS.API_OPERATION, handler) as { summary?: string; description?: string } | undefined) ?? { summary: '' };
  const note = `Needs the \`${scope}\` scope (403 \`insufficient_scope\` without it).`;
  Reflect.defineMetadata(DECORATORS.API_OPERATION, { ...operation, description: operation.description ? `${operation.description}\n\n${note}` : note }, handler);
}
