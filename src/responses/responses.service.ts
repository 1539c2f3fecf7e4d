import { Injectable } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppException } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import type { ActingContext } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { KeyScrubber } from '../upstream/upstream-errors';
import { isUnfinished, QueuedResponsesRepository, ResponseRecord } from './queued-responses.repository';
import { hasEnded, ResponseCompletion } from './response-completion';
import { ResponseKeys } from './response-keys';
import { ResumedStream } from './resumed-stream';
import { UpstreamResponseObject, UpstreamResponses } from './upstream-responses';

/** Longer ids are no response's (OpenAI's are ~50 characters): not looked up. */
const MAX_RESPONSE_ID_LENGTH = 256;

/** The query parameters the proxy reads itself; the whole query string goes upstream as it came. */
function readQuery(query: string): { stream: boolean } {
  const params = new URLSearchParams(query);
  const stream = params.get('stream');
  if (stream !== null && stream !== 'true' && stream !== 'false') throw AppException.invalid("stream must be 'true' or 'false'", 'stream');
  const after = params.get('starting_after');
  if (after !== null && !/^\d{1,15}$/.test(after)) throw AppException.invalid('starting_after must be a non-negative integer', 'starting_after');
  if (after !== null && stream !== 'true') throw AppException.invalid('starting_after needs stream=true', 'starting_after');
  return { stream: stream === 'true' };
}

/**
 * `GET /v1/responses/{id}`: a response made through the proxy, to the users entitled to it. A finished one comes
 * from its record; one the upstream has not finished comes from upstream, with the key that made it, and
 * completes its record when the upstream says it has ended; `?stream=true&starting_after=N` resumes its event
 * stream upstream.
 */
@Injectable()
export class ResponsesService {
  constructor(
    private readonly records: QueuedResponsesRepository,
    private readonly completion: ResponseCompletion,
    private readonly keys: ResponseKeys,
    private readonly upstream: UpstreamResponses,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
  ) {}

  /** `query` is the request's query string (without its `?`), forwarded upstream as it came. */
  async retrieve(acting: ActingContext, responseId: string, query: string, res: ServerResponse): Promise<void> {
    const { stream } = readQuery(query);
    const record = await this.entitled(acting, responseId);
    const forwarded = query ? `?${query}` : '';
    if (stream) return this.resume(record, forwarded, res);
    // a record that stored the object as it was answered answers for it; one that did not (capture mode redacted or
    // metadata) has the upstream answer, so the client gets its response as it is, not as it was stored
    if (!isUnfinished(record) && record.captureMode === 'full') return send(res, JSON.stringify(record.responseBody ?? null));
    const answer = await this.upstream.get(await this.keys.of(record), responseId, forwarded);
    if (hasEnded(answer.body)) await this.complete(record, answer);
    send(res, answer.text);
  }

  /**
   * The organization's record of the response, if this user may read it: a response made with a user's own key is
   * that user's only, one made with an organization key is every user's of the organization. Anyone else is told
   * it does not exist, as for an unknown id.
   */
  private async entitled(acting: ActingContext, responseId: string): Promise<ResponseRecord> {
    const unknown = () => AppException.notFound('response', responseId);
    if (responseId.length > MAX_RESPONSE_ID_LENGTH || responseId.includes('\u0000')) throw unknown();
    const record = await this.records.findByResponseId(acting.orgId, responseId);
    if (!record || (record.keySource === 'user' && record.userId !== acting.userId)) throw unknown();
    return record;
  }

  private async resume(record: ResponseRecord, query: string, res: ServerResponse): Promise<void> {
    const key = await this.keys.of(record);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const up = await this.upstream.open(key, record.responseId!, query, 'text/event-stream', abort.signal);
    if (!String(up.headers['content-type'] ?? '').includes('text/event-stream')) {
      // an upstream that answers the stream request with the object: answered as a plain retrieve
      const answer = await this.upstream.readObject(key, up);
      if (hasEnded(answer.body) && isUnfinished(record)) await this.complete(record, answer);
      return send(res, answer.text);
    }
    const onEnded = (answer: UpstreamResponseObject) => (isUnfinished(record) ? this.complete(record, answer) : Promise.resolve());
    await new ResumedStream(up, res, new KeyScrubber(key.apiKey), abort, this.config.upstreamMaxBodyBytes, onEnded).run();
  }

  /** The answer goes out whether or not its record could be completed now (the follower completes it later). */
  private async complete(record: ResponseRecord, answer: UpstreamResponseObject): Promise<void> {
    try {
      await this.completion.finish(record, answer);
    } catch (err) {
      this.logger.write('warn', 'background response record could not be completed on retrieve', { request_id: record.id, err });
    }
  }
}

function send(res: ServerResponse, json: string): void {
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}
