import type { ServerResponse } from 'node:http';
import { AppException } from '../common/app-exception';
import type { ExchangeStatus } from '../exchanges/recorder/exchange-record';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import { Captured, ProxyEndpoint, StreamCapture } from './exchange-capture';
import { SseFramer, SseParser } from './sse-parser';
import type { UpstreamResponse } from '../upstream/upstream-client';
import { KeyScrubber, upstreamFailure } from '../upstream/upstream-errors';

/** What the relay needs of the call it relays for. */
export interface RelayedCall {
  readonly endpoint: ProxyEndpoint;
  readonly res: ServerResponse;
  readonly scrubber: KeyScrubber;
  readonly record: RecordHandle;
  /** the proxy asked a chat stream for usage the client did not ask for: that chunk is left out */
  readonly usageUnrequested: boolean;
  /** the client closed its connection before the answer was over */
  readonly clientGone: boolean;
  /** records the outcome; false when it could not be written (the answer must then not be delivered as a success) */
  finish(status: ExchangeStatus, o: { upstreamStatus: number | null; captured?: Captured | null; error?: unknown }): Promise<boolean>;
}

export interface RelayLimits {
  maxBodyBytes: number;
  streamIdleTimeoutMs: number;
}

/**
 * - opening: no event checked yet and no header sent (a malformed or empty stream is still a clean 502)
 * - relaying: headers sent, whole events relayed as they complete
 * - tail: the final event is recorded and relayed; what still comes is passed through as it is
 * - over: the answer is over (a 503 or an error event may have been sent instead); what still arrives is dropped
 */
type Phase = 'opening' | 'relaying' | 'tail' | 'over';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };
const tooLarge = () => new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)');
// only whole events have been relayed, so the error event is read as one
const errorEvent = (exc: AppException) => `event: error\ndata: ${JSON.stringify(exc.toBody())}\n\n`;

const USAGE_KEY = Buffer.from('"usage"');
/** what was held while the pending row was written is relayed in regions of about this size */
const REPLAY_REGION_BYTES = 64 * 1024;

/**
 * Where the next `"usage"` member whose value is an object starts, from `from` on; -1 when none. Inside a JSON string
 * a quote is always escaped, so `"usage"` with both quotes bare is a member name; `"usage":null` (on every chunk of
 * a stream asked for usage) does not count.
 */
export function usageObjectAt(region: Buffer, from: number): number {
  let at = region.indexOf(USAGE_KEY, from);
  while (at >= 0) {
    let i = at + USAGE_KEY.length;
    while (i < region.length && (region[i] === 0x20 || region[i] === 0x09 || region[i] === 0x3a)) i++;
    if (region[i] === 0x7b) return at;
    at = region.indexOf(USAGE_KEY, i);
  }
  return -1;
}

/**
 * Relays the upstream's events to the client as they complete, byte for byte, parsing SSE on the side. Headers go
 * out once the first event has been checked (a malformed stream is still a clean 502) and the pending row is
 * written. The chunk that completes the final event is held until the record is committed. The upstream read
 * pauses while the client's socket is full. An event is relayed once whole: the call's key is taken out of it
 * first, and the usage chunk the proxy asked for on its own account is left out.
 */
export class StreamRelay {
  private phase: Phase = 'opening';
  /**
   * non-null while a record is being written (the pending row, the final event's, or a failure's): what the
   * upstream sends is kept here in order and handled after; the body keeps flowing, since a destroyed body drops
   * what it buffered
   */
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  /** whole events relayed before the first one was parsed (comments, retry fields), sent with it */
  private pre: Buffer[] = [];
  /**
   * the chunks the upstream body gave in this tick (one socket read often holds many of an upstream's HTTP chunks,
   * an event each): framed, checked and written as one region at the end of the tick, not one by one
   */
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private bytes = 0;
  /** how the upstream body ended: 'ended', or the error it failed with while the relay was holding */
  private upstreamEnd: 'open' | 'ended' | { error: unknown } = 'open';
  /** the client's socket is full: the upstream's body is paused until it drains */
  private awaitingDrain = false;
  private readonly body: UpstreamResponse['body'];
  private readonly status: number;
  private readonly capture: StreamCapture;
  private readonly parser: SseParser;
  private readonly framer = new SseFramer();
  private resolve!: () => void;
  private reject!: (err: unknown) => void;

  constructor(
    private readonly call: RelayedCall,
    up: UpstreamResponse,
    private readonly limits: RelayLimits,
  ) {
    this.body = up.body;
    this.status = up.statusCode;
    const capture = StreamCapture.for(call.endpoint, call.usageUnrequested);
    this.capture = capture;
    this.parser = new SseParser((event, data) => capture.onEvent(event, data));
  }

  /** Resolves once the answer is over; rejects with the error to answer when nothing has been sent. */
  run(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.body.on('data', this.onData);
      this.body.once('end', this.onEnd);
      this.body.once('error', this.onError);
      // nothing reaches the client before the pending row is written (if it cannot be, the answer is a 503)
      if (this.call.record.awaitsPendingRow) this.holdForPendingRow();
    });
  }

  private settle(err?: unknown): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    if (err) this.reject(err);
    else this.resolve();
  }

  private startAnswer(): void {
    this.phase = 'relaying';
    this.call.res.writeHead(200, SSE_HEADERS);
  }

  /** The whole events of region[from, to) (both event boundaries), parsed and ready for the client. */
  private take(region: Buffer, from: number, to: number): Buffer {
    const { scrubber } = this.call;
    // only an event carrying a usage object can be the usage chunk the client did not ask for: the events around
    // such an event are parsed and relayed in whole runs (a region without one, every chunk but the last, at once)
    const usageAt = (i: number) => {
      if (!this.call.usageUnrequested || i >= to) return -1;
      const at = usageObjectAt(region, i);
      return at < to ? at : -1;
    };
    let at = usageAt(from);
    if (at < 0) {
      const out = scrubber.bytes(from === 0 && to === region.length ? region : region.subarray(from, to));
      this.parser.push(out);
      return out;
    }
    const kept: Buffer[] = [];
    const ends = this.framer.ends;
    let e = 0;
    while (e < ends.length && ends[e] <= from) e++;
    while (from < to) {
      // the run of events before the one holding the usage object, then that event alone
      let start = from;
      while (e < ends.length && at >= 0 && ends[e] <= at) start = ends[e++];
      if (start > from) {
        const run = scrubber.bytes(region.subarray(from, start));
        this.parser.push(run);
        kept.push(run);
      }
      const end = at < 0 ? to : ends[e++];
      const event = scrubber.bytes(region.subarray(start, end));
      this.capture.hideLast = false;
      this.parser.push(event);
      if (at < 0 || !this.capture.hideLast) kept.push(event);
      from = end;
      at = usageAt(from);
    }
    return kept.length === 1 ? kept[0] : Buffer.concat(kept);
  }

  // the upstream read pauses while the client's socket is full; a client that takes nothing for
  // STREAM_IDLE_TIMEOUT_MS is cut off, which aborts the upstream call too (recorded as client_aborted)
  // (once: writes while it waits, several regions of a replay, add no second wait)
  private waitForDrain(): void {
    const { res } = this.call;
    const body = this.body;
    body.pause();
    if (this.awaitingDrain) return;
    this.awaitingDrain = true;
    const stalled = setTimeout(() => res.destroy(), this.limits.streamIdleTimeoutMs);
    const done = () => {
      this.awaitingDrain = false;
      clearTimeout(stalled);
      res.off('drain', onDrain);
      res.off('close', done);
    };
    const onDrain = () => {
      done();
      body.resume();
    };
    res.once('drain', onDrain);
    res.once('close', done);
  }

  private holdForPendingRow(): void {
    this.held = [];
    void this.call.record.pendingRow().then((ok) => {
      const queued = this.held ?? [];
      this.held = null;
      // over, or being recorded already (the upstream failed once the client left)
      if (this.phase === 'over' || (ok && this.call.record.done)) return;
      if (this.call.clientGone) {
        // the client left while the row was written: nothing more is relayed, but the call is recorded (the
        // upstream may have ended meanwhile, so no error of its body is coming to do it)
        this.held = [];
        this.body.removeAllListeners('data');
        this.body.destroy();
        void this.call.finish('client_aborted', { upstreamStatus: this.status, captured: this.capture.result() }).then(() => this.settle());
        return;
      }
      if (!ok) {
        this.body.removeAllListeners('data');
        this.body.destroy();
        return this.settle(AppException.databaseUnavailable());
      }
      // what arrived meanwhile leaves in one write (the socket is corked, not the response: a response's cork keeps
      // chunks back until its own uncork, which end() does only after the last chunk)
      const socket = this.call.res.socket;
      socket?.cork();
      // in regions of up to REPLAY_REGION_BYTES (a slow database may have held much of a long stream)
      let from = 0;
      let bytes = 0;
      for (let i = 0; i < queued.length; i++) {
        bytes += queued[i].length;
        if (bytes < REPLAY_REGION_BYTES && i < queued.length - 1) continue;
        this.relay(i === from ? queued[i] : Buffer.concat(queued.slice(from, i + 1), bytes));
        from = i + 1;
        bytes = 0;
      }
      socket?.uncork();
      if (this.held) return;
      const end = this.upstreamEnd;
      if (typeof end === 'object') {
        this.upstreamEnd = 'open';
        this.onError(end.error);
      } else if (end === 'ended') this.onEnd();
    });
  }

  /** The answer failed before its final event: recorded, then a 502 (nothing sent yet) or an error event. */
  private async stop(exStatus: ExchangeStatus, exc: AppException): Promise<void> {
    if (this.phase === 'over' || this.held) return;
    this.held = [];
    this.body.removeAllListeners('data');
    this.body.destroy();
    const captured = this.capture.result();
    if (this.call.clientGone) {
      await this.call.finish('client_aborted', { upstreamStatus: this.status, captured });
      return this.settle();
    }
    await this.call.finish(exStatus, { upstreamStatus: this.status, captured, error: exc.toBody().error });
    if (this.phase === 'opening') return this.settle(this.call.record.unrecorded ? AppException.databaseUnavailable() : exc);
    this.call.res.end(errorEvent(exc));
    this.settle();
  }

  /** The final event has arrived: it is relayed once its record is committed. */
  private completeWith(out: Buffer[]): void {
    this.held = [];
    this.body.pause();
    const captured = this.capture.result();
    const exStatus: ExchangeStatus = this.capture.errorStatus ?? 'completed';
    void this.call.finish(exStatus, { upstreamStatus: this.status, captured, error: captured.upstreamError ?? null }).then((recorded) => {
      const held = this.held!;
      this.held = null;
      const { res, scrubber } = this.call;
      if (this.call.clientGone) return this.settle();
      if (!recorded) {
        this.body.destroy();
        const exc = AppException.databaseUnavailable();
        if (this.phase === 'opening') return this.settle(exc);
        res.end(errorEvent(exc));
        return this.settle();
      }
      if (this.phase === 'opening') this.startAnswer();
      // the final event, what follows it and the end of the answer leave in one write (end() uncorks the socket)
      const socket = res.socket;
      socket?.cork();
      for (const b of out) res.write(b);
      // what followed the final event in its chunk, then what came after it
      if (this.framer.held) res.write(scrubber.bytes(this.framer.rest()));
      for (const b of held) res.write(scrubber.bytes(b));
      // the answer is complete and recorded: an upstream that failed after it does not matter
      if (this.upstreamEnd !== 'open' || this.body.destroyed) {
        res.end();
        this.settle();
      } else {
        socket?.uncork();
        this.phase = 'tail';
        this.body.resume();
      }
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase === 'over') return;
    if (this.held) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      // over the limit anyway (the replay stops the stream): no need to keep reading
      if (this.heldBytes > this.limits.maxBodyBytes) this.body.pause();
      return;
    }
    if (this.phase === 'tail') {
      // bytes after the final event (normally none): relayed as they are
      if (!this.call.res.write(this.call.scrubber.bytes(chunk))) this.waitForDrain();
      return;
    }
    // the body's chunks of one read arrive in one tick: relayed together once they are all in (before the body's
    // end or error, which come in a later tick, and which flush what is left anyway)
    if (!this.batch.length) process.nextTick(this.flush);
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
  };

  private readonly flush = (): void => {
    const batch = this.batch;
    if (!batch.length) return;
    const chunk = batch.length === 1 ? batch[0] : Buffer.concat(batch, this.batchBytes);
    this.batch = [];
    this.batchBytes = 0;
    this.relay(chunk);
  };

  /** Relays what the upstream sent, as whole events (what is left of an event is held for the next chunk). */
  private relay(chunk: Buffer): void {
    if (this.phase === 'over') return;
    if (this.held || this.phase === 'tail') return this.onData(chunk);
    this.bytes += chunk.length;
    if (this.bytes > this.limits.maxBodyBytes) {
      void this.stop('upstream_error', tooLarge());
      return;
    }
    const region = this.framer.push(chunk);
    if (!region) return;
    // the region's last event is taken apart from those before it: when it is the final one, only it waits for the
    // record, the others leave at once
    const ends = this.framer.ends;
    const last = ends.length > 1 ? ends[ends.length - 2] : 0;
    if (last > 0 && !this.deliver(this.take(region, 0, last), region.subarray(last))) return;
    this.deliver(this.take(region, last, region.length), null);
  }

  /**
   * Sends whole events on, or holds them with the final event for the record; false when the relay stopped or holds
   * (`after`, the region's events not yet taken, then goes with the final event, as it is)
   */
  private deliver(out: Buffer, after: Buffer | null): boolean {
    if (this.capture.malformed) {
      void this.stop('upstream_error', new AppException('upstream_error', 'The upstream sent malformed server-sent events'));
      return false;
    }
    if (this.phase === 'opening') {
      if (this.parser.events === 0) {
        if (out.length) this.pre.push(out);
        return true;
      }
      if (this.pre.length) {
        this.pre.push(out);
        out = Buffer.concat(this.pre);
        this.pre = [];
      }
      if (!this.capture.terminal) this.startAnswer();
    }
    if (this.capture.terminal) {
      this.completeWith(after ? [out, this.call.scrubber.bytes(after)] : [out]);
      return false;
    }
    if (out.length && !this.call.res.write(out)) this.waitForDrain();
    return true;
  }

  private readonly onEnd = (): void => {
    this.flush();
    if (this.upstreamEnd === 'open') this.upstreamEnd = 'ended';
    if (this.phase === 'over' || this.held) return;
    if (this.phase === 'tail') {
      this.call.res.end();
      return this.settle();
    }
    // an event the upstream did not end with a blank line is not dispatched, but its bytes are relayed
    if (this.capture.complete) return this.completeWith(this.framer.held ? [...this.pre, this.call.scrubber.bytes(this.framer.rest())] : this.pre);
    const opening = this.phase === 'opening';
    void this.stop('upstream_error', new AppException('upstream_error', opening ? 'The upstream sent an empty or incomplete event stream' : 'The upstream stream ended before the answer was complete'));
  };

  private readonly onError = (err: unknown): void => {
    this.flush();
    if (this.phase === 'over') return;
    if (this.call.clientGone) {
      this.held ??= [];
      void this.call.finish('client_aborted', { upstreamStatus: this.status, captured: this.capture.result() }).then(() => this.settle());
      return;
    }
    if (this.held) {
      this.upstreamEnd = { error: err };
      return;
    }
    const exc = upstreamFailure(err);
    void this.stop(exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', exc);
  };
}
