import { CallHandler, ExecutionContext, Injectable, NestInterceptor, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { json } from 'express';
import type { Request, Response } from 'express';
import { from, Observable, switchMap } from 'rxjs';
import { AppException } from './app-exception';
import { bodyParserError } from './http-exception.filter';
import { FORWARDED_JSON_BOUNDS, JsonBounds, MANAGED_JSON_BOUNDS, nulRefused, refuseNulInJson, refuseOversizedJson } from './json-limits';
import type { ProxyRequest } from './request-context';

const FORWARDS_BODY = 'forwardsBody';
/** The route forwards its body upstream as sent: no NUL check on it, and the proxied bounds on its JSON. */
export const ForwardsBody = () => SetMetadata(FORWARDS_BODY, true);

const JSON_TYPES = ['application/json', 'application/*+json'];

/** What a body-parser error carries when the refusal is ours (thrown from `verify`, before JSON.parse). */
interface VerifyRefusal extends Error {
  refusal?: AppException;
}

/**
 * Reads and parses the request body once the guards have accepted the caller, so a call without a valid token or
 * X-User-ID is answered 401/422 without its body being read (the rest of it is discarded within a bound, see
 * startRequest). The JSON is bounded in depth and size before it is parsed; on the proxy's own routes a NUL in the
 * path, the query or any JSON string is a 400 naming the parameter.
 */
@Injectable()
export class RequestBodyInterceptor implements NestInterceptor {
  private readonly parsers: Record<'forwarded' | 'managed', ReturnType<typeof json>>;

  constructor(
    private readonly reflector: Reflector,
    private readonly bodyLimit: number,
  ) {
    this.parsers = { forwarded: this.parser(FORWARDED_JSON_BOUNDS), managed: this.parser(MANAGED_JSON_BOUNDS) };
  }

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const http = ctx.switchToHttp();
    const req = http.getRequest<ProxyRequest>();
    const forwards = this.reflector.getAllAndOverride<boolean>(FORWARDS_BODY, [ctx.getHandler(), ctx.getClass()]) === true;
    refuseNulInParams(req);
    return from(this.read(req, http.getResponse<Response>(), forwards)).pipe(switchMap(() => next.handle()));
  }

  private parser(bounds: JsonBounds): ReturnType<typeof json> {
    return json({
      limit: this.bodyLimit,
      type: JSON_TYPES,
      verify: (req, _res, buf, encoding) => {
        // JSON is UTF-8 (RFC 8259); the bounds are counted on its bytes
        if (encoding !== 'utf-8' && encoding !== 'utf8') throw Object.assign(new Error('charset'), { type: 'charset.unsupported' });
        try {
          refuseOversizedJson(buf, bounds);
        } catch (err) {
          throw Object.assign(new Error('refused'), { refusal: err });
        }
        (req as ProxyRequest).rawBody = buf;
      },
    });
  }

  private read(req: ProxyRequest, res: Response, forwards: boolean): Promise<void> {
    const encoding = req.headers['content-encoding'];
    if ((encoding === undefined || encoding.toLowerCase() === 'identity') && Number(req.headers['content-length']) > this.bodyLimit) {
      return Promise.reject(bodyParserError({ status: 413 }, this.bodyLimit));
    }
    return new Promise<void>((resolve, reject) => {
      this.parsers[forwards ? 'forwarded' : 'managed'](req as Request, res, (err?: unknown) => {
        if (err) {
          const e = err as VerifyRefusal & { type?: string; status?: number };
          return reject(e.refusal ?? bodyParserError(e, this.bodyLimit));
        }
        try {
          if (!forwards) refuseNulInJson(req.body);
          resolve();
        } catch (refusal) {
          reject(refusal);
        }
      });
    });
  }
}

/** A NUL in a path segment or a query parameter (name or value) of any route. */
function refuseNulInParams(req: Request): void {
  for (const [name, value] of Object.entries(req.params ?? {})) {
    if (typeof value === 'string' && value.includes('\0')) throw nulRefused(name);
  }
  const query = req.query as Record<string, unknown>;
  for (const [name, value] of Object.entries(query ?? {})) {
    if (name.includes('\0')) throw nulRefused(name);
    refuseNulInQueryValue(value, name);
  }
}

function refuseNulInQueryValue(value: unknown, name: string): void {
  if (typeof value === 'string') {
    if (value.includes('\0')) throw nulRefused(name);
  } else if (Array.isArray(value)) {
    for (const v of value) refuseNulInQueryValue(v, name);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes('\0')) throw nulRefused(name);
      refuseNulInQueryValue(v, name);
    }
  }
}
