import { Injectable } from '@nestjs/common';
import { JsonLogger } from '../common/logger';
import type { ExchangeStatus } from '../exchanges/recorder/exchange-record';
import { LimitsService } from '../limits/limits.service';
import type { BackgroundResponseClosed } from '../metrics/metrics.service';
import { toolCallsOf } from '../pricing/answer-usage';
import { PricingService } from '../pricing/pricing.service';
import { captureJson } from '../proxy/exchange-capture';
import { storedLater } from '../privacy/capture-mode';
import { EndedResponse, QueuedResponsesRepository, ResponseRecord } from './queued-responses.repository';
import type { UpstreamResponseObject } from './upstream-responses';

/** The statuses in which a response is over upstream: it changes no more. */
const ENDED = new Set(['completed', 'failed', 'incomplete', 'cancelled']);

/** Whether the upstream's response object is over (completed, failed, incomplete or cancelled). */
export function hasEnded(body: Record<string, unknown>): boolean {
  return typeof body.status === 'string' && ENDED.has(body.status);
}

/** The error stored with a background response the proxy stopped following. */
export function followError(code: string, message: string): { message: string; type: string; code: string; param: null } {
  return { message, type: 'upstream_error', code, param: null };
}

/**
 * Completes the record of a background response once the upstream says it has ended, whoever saw it end (the
 * follower, or a client's retrieve): status, the final object, output text, usage, cost and latency, then the
 * limits and metrics, for the part the estimate counted when the response was created fell short of. A response is
 * completed once: whoever comes second finds its record completed and does nothing.
 */
@Injectable()
export class ResponseCompletion {
  private count: (closed: BackgroundResponseClosed) => void = () => undefined;

  constructor(
    private readonly records: QueuedResponsesRepository,
    private readonly pricing: PricingService,
    private readonly limits: LimitsService,
    private readonly logger: JsonLogger,
  ) {}

  /** Where closed records are counted (the metrics of the follower's process). */
  countWith(count: (closed: BackgroundResponseClosed) => void): void {
    this.count = count;
  }

  /** Completes the record with the ended response; false when it was completed already. */
  async finish(record: ResponseRecord, answer: UpstreamResponseObject): Promise<boolean> {
    const { body } = answer;
    const upstreamStatus = body.status as string;
    const captured = captureJson('responses', body);
    const failed = upstreamStatus === 'failed';
    // as for a call answered at once: an incomplete response is an answer (the object says why it stopped), and a
    // cancelled one was stopped by its client
    const status: ExchangeStatus = failed ? 'failed' : upstreamStatus === 'cancelled' ? 'client_aborted' : 'completed';
    // without usage, a response that did not fail may still have been billed: the estimate made at its start stays
    const usage = captured.usage ?? (failed ? null : 'estimate');
    const model = captured.model ?? record.model;
    // priced as a call answered at once: the tier it ran on and its built-in tool calls count
    const tier = typeof body.service_tier === 'string' ? body.service_tier : null;
    const cost = usage && usage !== 'estimate' ? this.pricing.cost(model, usage, { serviceTier: tier, ...toolCallsOf(body) }) : null;
    const completedAt = new Date();
    // stored as the record was: in full, redacted (with the placeholders its request got, when this process made
    // it) or without bodies and text
    const capture = storedLater(record.id, record.captureMode);
    const error = failed ? (captured.upstreamError ?? { message: 'The response failed' }) : null;
    const ended: EndedResponse = {
      status,
      responseBody: capture ? (capture.mode === 'metadata' ? null : JSON.stringify(capture.json(body))) : answer.text,
      outputText: capture ? capture.text(captured.outputText) : captured.outputText,
      error: capture ? capture.error(error) : error,
      usage,
      cost,
      latencyMs: completedAt.getTime() - record.createdAt.getTime(),
      completedAt,
    };
    const before = await this.records.complete(record.id, ended);
    if (!before) return false;
    capture?.ended(record.id);
    this.logger.write('info', 'background response ended', { request_id: record.id, response_id: record.responseId, status: upstreamStatus });
    if (usage === 'estimate') {
      this.count({ outcome: upstreamStatus, model });
      return true;
    }
    const more = (now: number | null | undefined, counted: number | null) => Math.max(0, (now ?? 0) - (counted ?? 0));
    const tokens = usage ? (usage.total ?? (usage.input ?? 0) + (usage.output ?? 0)) : 0;
    // counted in the windows of the response's creation, as the estimate was; a usage below the estimate is not
    // taken back (the counters only grow)
    await this.limits.settle(
      { headers: null, subjects: { orgId: record.organizationId, userId: record.userId }, at: record.createdAt.getTime(), reservation: null, settled: false },
      { tokens: more(tokens, before.totalTokens), cost: more(cost, before.cost) },
    );
    this.count({
      outcome: upstreamStatus,
      model,
      inputTokens: more(usage?.input, before.inputTokens),
      outputTokens: more(usage?.output, before.outputTokens),
      cost: more(cost, before.cost),
    });
    return true;
  }

  /** Closes the record of a response that is no longer followed as interrupted, with why; false when it had ended already. */
  async interrupt(record: ResponseRecord, error: ReturnType<typeof followError>): Promise<boolean> {
    const completedAt = new Date();
    const closed = await this.records.interrupt(record.id, error, completedAt.getTime() - record.createdAt.getTime(), completedAt);
    if (!closed) return false;
    this.logger.write('warn', 'background response no longer followed', { request_id: record.id, response_id: record.responseId, code: error.code });
    this.count({ outcome: 'interrupted', model: record.model });
    return true;
  }
}
