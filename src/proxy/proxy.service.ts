import { Injectable } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { newSessionId } from '../common/ids';
import type { ProxiedRequest } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import { KeyHealth } from '../keys/key-health.service';
import { KeyResolver } from '../keys/key-resolver';
import { LimitsService } from '../limits/limits.service';
import { MetricsService, phaseRoute } from '../metrics/metrics.service';
import { PersonasService } from '../personas/personas.service';
import type { ProxyEndpoint } from './exchange-capture';
import { ExchangesService } from '../exchanges/exchanges.service';
import { PricingService } from '../pricing/pricing.service';
import { CallServices, ProxiedCall } from './proxied-call';
import { lacksStreamUsage, readProxyBody, readSessionHeader, safetyIdentifierFor, withoutPersona, withPersona } from './proxy-body';
import { UpstreamClient } from '../upstream/upstream-client';
import { ObjectOwners } from '../relay/object-owners';
import { captureModeFor, exchangeCapture } from '../privacy/capture-mode';

const ROUTE_TEMPLATES: Record<ProxyEndpoint, string> = { responses: '/v1/responses', 'chat.completions': '/v1/chat/completions' };

/** The conversation a Responses call joins (`conversation`: an id, or an object with one). */
function conversationOf(body: Record<string, unknown>): string | null {
  const c = body.conversation;
  if (typeof c === 'string' && c) return c.slice(0, 256);
  if (c && typeof c === 'object' && typeof (c as { id?: unknown }).id === 'string') return ((c as { id: string }).id).slice(0, 256);
  return null;
}

/** Forwards /v1/responses and /v1/chat/completions: sessions, personas, retries, streaming relay, exchange records. */
@Injectable()
export class ProxyService {
  /** what each call uses */
  private readonly services: CallServices;

  constructor(
    private readonly keys: KeyResolver,
    private readonly personas: PersonasService,
    upstream: UpstreamClient,
    private readonly recorder: ExchangeRecorder,
    private readonly exchanges: ExchangesService,
    pricing: PricingService,
    config: AppConfig,
    private readonly limits: LimitsService,
    metrics: MetricsService,
    private readonly owners: ObjectOwners,
    health: KeyHealth,
  ) {
    this.services = { upstream, pricing, exchanges, limits, metrics, config, health };
  }

  async forward(endpoint: ProxyEndpoint, req: ProxiedRequest, res: ServerResponse): Promise<void> {
    const acting = req.acting!;
    // what is stored of the call (X-Capture-Mode may lower the organization's mode; refused before anything is done)
    const capture = exchangeCapture(captureModeFor(acting, req.headers));
    const fields = readProxyBody(endpoint, req.body, req.rawBody);
    if (req.marks) req.phaseRoute = phaseRoute(endpoint, fields.stream);
    const sessionHeader = readSessionHeader(req.headers['x-session-id']);
    const persona = fields.personaId ? await this.personas.resolveForRequest(acting.orgId, fields.personaId) : null;
    // a response or conversation the call continues is reached with the key that made it, by its owners only
    const conversation = conversationOf(fields.body);
    const refs = fields.previousResponseId ? [fields.previousResponseId] : [];
    if (conversation) refs.push(conversation);
    // a conversation is one session; so is a chain of responses
    const sessionId =
      sessionHeader ??
      (fields.previousResponseId ? await this.exchanges.sessionOfResponse(acting.orgId, fields.previousResponseId) : null) ??
      conversation ??
      newSessionId();
    // an object's key wins over the pool; otherwise the pool's keys serving the model, the session's first
    const owned = refs.length ? await this.owners.keyFor(acting, refs, { model: fields.model, sessionId }) : null;
    const candidates = owned?.owned && owned.key.keyId === owned.owned.keyId ? [owned.key] : await this.keys.candidates(acting, { model: fields.model, sessionId });
    const key = candidates[0];
    res.setHeader('X-Session-ID', sessionId);
    res.setHeader('X-Key-Source', key.source);
    // a chat stream is asked for its usage even when the client did not (budgets and token limits count it)
    const askUsage = lacksStreamUsage(endpoint, fields);
    // the organization's safety identifier for this user, unless the client sent its own
    const safetyId = safetyIdentifierFor(acting, this.services.config.jwtSecret);
    const payload = persona
      ? withPersona(endpoint, fields.body, persona.content, askUsage, safetyId)
      : withoutPersona(fields.body, req.rawBody!, askUsage, safetyId);

    // rate limits and budgets, before anything is recorded or sent upstream (429 with Retry-After)
    const admission = await this.limits.admit(acting, { model: fields.model, body: fields.body, instructions: persona?.content });
    if (admission.headers) for (const [name, value] of Object.entries(admission.headers)) res.setHeader(name, value);

    // The record opens before the upstream is called (a process killed mid-call leaves a trace); how its pending
    // row is written (while the upstream is called, or first when the database is known to be unreachable: 503
    // before the upstream is called) is the record's business.
    const pending = {
      id: req.requestId,
      organizationId: acting.orgId,
      userId: acting.userId,
      externalUserId: acting.externalUserId,
      sessionId,
      personaId: persona?.id ?? null,
      personaVersion: persona?.version ?? null,
      endpoint,
      model: fields.model,
      stream: fields.stream,
      requestBody: typeof payload === 'string' ? payload : payload === req.rawBody && req.rawText !== undefined ? req.rawText : payload.toString('utf8'),
      keyId: key.keyId,
      keySource: key.source,
      createdAt: new Date(),
      method: 'POST',
      route: ROUTE_TEMPLATES[endpoint],
      capture,
    };
    const opened = this.recorder.open(pending);
    let record: RecordHandle;
    if (opened instanceof Promise) {
      try {
        record = await opened;
      } catch (err) {
        void this.limits.settle(admission, null);
        throw err;
      }
    } else record = opened;
    const call = new ProxiedCall(this.services, endpoint, fields, req, res, candidates, sessionId, payload, record, admission, askUsage);
    try {
      await call.run();
    } catch (err) {
      if (!record.done) {
        await call.finish('upstream_error', { upstreamStatus: null, error: { message: 'The proxy failed while handling the call', type: 'server_error' } });
      }
      throw err;
    }
  }
}
