import { Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestAuthenticator } from '../auth/request-authenticator';
import { AppException } from '../common/app-exception';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import { AppExceptionFilter, bodyParserError } from '../common/http-exception.filter';
import { FORWARDED_JSON_BOUNDS, refuseOversizedJson } from '../common/json-limits';
import type { ProxiedRequest } from '../common/request-context';
import { startRequest, unreadBodyDiscardBound } from '../common/request-start';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { markPhase, newPhaseMarks, PHASE } from '../metrics/call-phases';
import { MetricsService } from '../metrics/metrics.service';
import type { ProxyEndpoint } from './exchange-capture';
import { ProxyService } from './proxy.service';
import { isAdminPath, matchOpenAIRoute, RouteMatch } from '../relay/openai-routes';
import { RelayService } from '../relay/relay.service';

const ROUTES: Record<string, ProxyEndpoint> = { '/v1/responses': 'responses', '/v1/chat/completions': 'chat.completions' };
/** JSON media types Express' parser takes, in UTF-8 (the only charset it accepts) */
const JSON_TYPE = /^application\/(?:[a-z0-9.!#$%&'*^_`|~-]+\+)?json[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*"?utf-8"?[ \t]*)?$/i;

/**
 * The proxy routes served straight from node:http, ahead of Express and the Nest pipeline: the same request id, the
 * same authentication (token, then X-User-ID), the same body limit and errors, the same ProxyService. Takes only the
 * plain case: `POST /v1/responses` or `/v1/chat/completions` exactly, with an uncompressed UTF-8 JSON body; any other
 * request (compressed or other-charset bodies, other spellings of the path) goes through Express to ProxyController,
 * which ends in the same ProxyService.
 */
@Injectable()
export class ProxyDispatch {
  private filter?: AppExceptionFilter;

  constructor(
    private readonly auth: RequestAuthenticator,
    private readonly proxy: ProxyService,
    private readonly relay: RelayService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly metrics: MetricsService,
  ) {}

  /** The filter that answers errors (the app's global one). */
  answerErrorsWith(filter: AppExceptionFilter): void {
    this.filter = filter;
  }

  /** Takes the request when it is a plain proxied call; false leaves it to Express. */
  take(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.filter) return false;
    const q = req.url!.indexOf('?');
    const path = q < 0 ? req.url! : req.url!.slice(0, q);
    const endpoint = req.method === 'POST' ? ROUTES[path] : undefined;
    if (endpoint === undefined) return this.takeRelayed(req, res, path);
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
    const type = req.headers['content-type'];
    if (type === undefined || !JSON_TYPE.test(type)) return false;

    const r = req as ProxiedRequest;
    startRequest(r, res, this.logger, path, unreadBodyDiscardBound(this.config.bodyLimitBytes));
    const marks = (r.marks = newPhaseMarks());
    res.once('finish', () => {
      const now = performance.now();
      this.metrics.observeHttp('POST', path, res.statusCode, (now - r.startedAt) / 1000);
      if (r.phaseRoute !== undefined && res.statusCode < 400) {
        marks[PHASE.answer] = now;
        this.metrics.phases.add(r.phaseRoute, r.startedAt, marks);
      }
    });
    void this.serve(endpoint, r, res, path);
    return true;
  }

  /** Every other OpenAI route (but those with handlers of their own) goes to the generic relay. */
  private takeRelayed(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (!path.startsWith('/v1/')) return false;
    if (path === '/v1/realtime') return this.refuseUpgradeless(req, res, path);
    const admin = isAdminPath(path);
    const match = admin ? null : matchOpenAIRoute(req.method!, path);
    if (!admin && (!match || match.route.own)) return false;
    const r = req as ProxiedRequest;
    const template = match?.route.template ?? '/v1/organization';
    startRequest(r, res, this.logger, path, unreadBodyDiscardBound(this.config.uploadLimitBytes));
    res.once('finish', () => this.metrics.observeHttp(req.method!, template, res.statusCode, (performance.now() - r.startedAt) / 1000));
    void this.serveRelayed(match, r, res, path);
    return true;
  }

  /** The realtime API is a WebSocket: a plain request to it is told so (upgrades never reach here). */
  private refuseUpgradeless(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    startRequest(req as ProxiedRequest, res, this.logger, path, unreadBodyDiscardBound(this.config.bodyLimitBytes));
    this.filter!.answer(
      new AppException('invalid_request', `${req.method} /v1/realtime is a WebSocket endpoint: connect with an Upgrade: websocket request`, { code: 'websocket_required', status: 426 }),
      path,
      res,
    );
    return true;
  }

  private async serveRelayed(match: RouteMatch | null, req: ProxiedRequest, res: ServerResponse, path: string): Promise<void> {
    try {
      const claims = await this.auth.verifyToken(req.headers, 'proxy');
      req.acting = await this.auth.actingFor(claims, req.headers);
      if (!match) {
        throw new AppException('no_api_key', `${req.method} ${path} is a route of OpenAI's administration API, which needs an organization admin key and is not relayed`, {
          code: 'admin_route_not_relayed',
        });
      }
      await this.relay.relay(match, req, res);
    } catch (err) {
      if (err instanceof BodyTooLarge) err = new AppException('body_too_large', `The request body is larger than the configured limit (${match?.route.method === 'GET' ? 'BODY_LIMIT' : 'BODY_LIMIT for JSON, UPLOAD_LIMIT for uploads'})`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      this.filter!.answer(err, path, res);
    }
  }

  private async serve(endpoint: ProxyEndpoint, req: ProxiedRequest, res: ServerResponse, path: string): Promise<void> {
    try {
      const claims = await this.auth.verifyToken(req.headers, 'proxy');
      req.acting = await this.auth.actingFor(claims, req.headers);
      markPhase(req.marks, PHASE.auth);
      const raw = await this.readBody(req);
      if (raw.length) {
        refuseOversizedJson(raw, FORWARDED_JSON_BOUNDS);
        req.rawBody = raw;
        req.rawText = raw.toString('utf8');
        req.body = parseStrictJson(req.rawText);
      }
      markPhase(req.marks, PHASE.body);
      await this.proxy.forward(endpoint, req, res);
    } catch (err) {
      // the rest of an oversized body is read and discarded within a bound after the answer (see startRequest)
      if (err instanceof BodyTooLarge) err = bodyParserError({ status: 413 }, this.config.bodyLimitBytes);
      this.filter!.answer(err, path, res);
    }
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    const limit = this.config.bodyLimitBytes;
    if (Number(req.headers['content-length']) > limit) return Promise.reject(new BodyTooLarge());
    return readBounded(req, limit, true).catch((err: unknown) => {
      throw err instanceof BodyTooLarge ? err : AppException.invalid('The request body was not received completely');
    });
  }
}

/** JSON.parse with Express' strict mode: an object or array at the top, else 400 "not valid JSON". */
function parseStrictJson(text: string): unknown {
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (start < text.length && (text[start] === ' ' || text[start] === '\t' || text[start] === '\n' || text[start] === '\r')) start++;
  if (text[start] !== '{' && text[start] !== '[') throw AppException.invalid('Request body is not valid JSON');
  try {
    return JSON.parse(start ? text.slice(start) : text);
  } catch {
    throw AppException.invalid('Request body is not valid JSON');
  }
}
