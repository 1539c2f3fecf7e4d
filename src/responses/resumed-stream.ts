import type { ServerResponse } from 'node:http';
import { AppException } from '../common/app-exception';
import { SseFramer, SseParser } from '../proxy/sse-parser';
import type { UpstreamResponse } from '../upstream/upstream-client';
import { KeyScrubber, upstreamFailure } from '../upstream/upstream-errors';
import { hasEnded } from './response-completion';
import type { UpstreamResponseObject } from './upstream-responses';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };
/** the events that carry the response as it ended */
const FINAL_EVENTS = new Set(['response.completed', 'response.failed', 'response.incomplete', 'response.cancelled']);
const errorEvent = (exc: AppException) => `event: error\ndata: ${JSON.stringify(exc.toBody())}\n\n`;

/**
 * - relaying: whole events go to the client as they complete
 * - recording: the event that ends the response has arrived; it waits (the upstream read paused) until the record
 *   is completed, so a client that reads the record next finds it completed
 * - over: the client went away, or the answer is over
 */
type Phase = 'relaying' | 'recording' | 'over';

/**
 * Relays a response's resumed event stream (`GET /v1/responses/{id}?stream=true&starting_after=N`) as it arrives:
 * whole events, byte for byte but for the call's key taken out of them, the upstream read paused while the client's
 * socket is full. The client going away aborts the upstream call. The event that ends the response completes its
 * record first (`onEnded`).
 */
export class ResumedStream {
  private phase: Phase = 'relaying';
  private readonly framer = new SseFramer();
  private readonly parser: SseParser;
  private ended: UpstreamResponseObject | null = null;
  private upstreamDone = false;
  private resolve!: () => void;

  constructor(
    private readonly up: UpstreamResponse,
    private readonly res: ServerResponse,
    private readonly scrubber: KeyScrubber,
    private readonly abort: AbortController,
    /** the longest event held whole before it is relayed */
    private readonly maxEventBytes: number,
    private readonly onEnded: (answer: UpstreamResponseObject) => Promise<void>,
  ) {
    this.parser = new SseParser((event, data) => this.onEvent(event, data));
  }

  /** Resolves once the answer is over (or the client gone). */
  run(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.resolve = resolve;
      this.res.writeHead(200, SSE_HEADERS);
      this.res.once('close', () => {
        if (this.res.writableFinished) return;
        this.abort.abort();
        this.up.body.destroy();
        this.over();
      });
      this.up.body.on('data', this.onData);
      this.up.body.once('end', this.onEnd);
      this.up.body.once('error', this.onError);
    });
  }

  private over(): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    this.resolve();
  }

  private onEvent(event: string, data: string): void {
    if (this.ended || (event && !FINAL_EVENTS.has(event))) return;
    let ev: unknown;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    const response = (ev as { response?: unknown } | null)?.response;
    if (typeof response !== 'object' || response === null || Array.isArray(response)) return;
    if (hasEnded(response as Record<string, unknown>)) this.ended = { text: JSON.stringify(response), body: response as Record<string, unknown> };
  }

  private write(out: Buffer): void {
    if (!out.length || this.res.write(out)) return;
    const body = this.up.body;
    body.pause();
    this.res.once('drain', () => {
      if (this.phase === 'relaying') body.resume();
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase !== 'relaying') return;
    const region = this.framer.push(chunk);
    if (this.framer.held > this.maxEventBytes) {
      this.up.body.destroy();
      this.fail(new AppException('upstream_error', 'The upstream sent an event larger than the configured limit (UPSTREAM_MAX_BODY)'));
      return;
    }
    if (!region) return;
    const out = this.scrubber.bytes(region);
    const wasEnded = this.ended !== null;
    this.parser.push(out);
    if (wasEnded || !this.ended) return this.write(out);
    this.phase = 'recording';
    this.up.body.pause();
    void this.onEnded(this.ended).finally(() => {
      if (this.phase !== 'recording') return;
      this.phase = 'relaying';
      this.write(out);
      if (this.upstreamDone) this.onEnd();
      else if (!this.res.writableNeedDrain) this.up.body.resume();
    });
  };

  private readonly onEnd = (): void => {
    this.upstreamDone = true;
    if (this.phase !== 'relaying') return;
    // an event the upstream did not end with a blank line is relayed as it is
    if (this.framer.held) this.res.write(this.scrubber.bytes(this.framer.rest()));
    this.res.end();
    this.over();
  };

  private readonly onError = (err: unknown): void => {
    if (this.phase === 'over') return;
    // the response has ended already: what failed after its last event does not matter
    if (this.phase === 'recording') {
      this.upstreamDone = true;
      return;
    }
    this.fail(upstreamFailure(err));
  };

  private fail(exc: AppException): void {
    if (this.phase === 'over') return;
    this.res.end(errorEvent(exc));
    this.over();
  }
}
