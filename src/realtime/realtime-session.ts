import WebSocket from 'ws';
import { closeReason, sendableCloseCode } from './realtime-handshake';
import type { OpenUpstream } from './realtime-upstream';

/**
 * Backpressure: once more than this is queued toward one side (its socket's buffer and the frames not yet written),
 * the other side is no longer read, so a slow reader holds back its sender instead of growing the proxy's memory.
 */
export const HIGH_WATER_BYTES = 1024 * 1024;
/** reading resumes once the queue is down to this */
export const LOW_WATER_BYTES = 256 * 1024;

export type Side = 'client' | 'upstream';

/** How a session ended. */
export interface SessionEnd {
  /** who closed first: a side, or the proxy itself (shutting down) */
  by: Side | 'proxy';
  /** the close code as that side's socket reported it (1006: the connection was lost without a close frame) */
  code: number;
  reason: string;
  /** what failed on that side, if anything did (a protocol error, a frame over the size limit) */
  error: string | null;
}

export interface FlowStats {
  frames: number;
  bytes: number;
  /** the most ever queued toward this side */
  peakQueuedBytes: number;
}

type State = 'relaying' | 'closing' | 'closed';

/** What the relay does with what the upstream sends before passing it on. */
export interface UpstreamHooks {
  /** the bytes without the key (an upstream error quoting it) */
  scrub(data: Buffer): Buffer;
  /** a frame from the upstream, as passed on (usage is counted from it) */
  observe(data: Buffer, isBinary: boolean): void;
}

/**
 * Relays one Realtime session between the client's socket and the upstream's: every message as it arrives, text and
 * binary kept as they are, with backpressure each way. The first side to close is closed on the other with its code
 * and reason (a lost connection becomes 1014 toward the client, 1001 toward the upstream); `ended` resolves once both
 * sockets are closed.
 *
 * relaying → closing (one side closed, or the proxy shuts down: the other is being closed) → closed.
 */
export class RealtimeSession {
  private state: State = 'relaying';
  private end: SessionEnd | null = null;
  private readonly closedSides: Record<Side, boolean> = { client: false, upstream: false };
  private readonly errors: Record<Side, string | null> = { client: null, upstream: null };
  private resolveEnded!: (end: SessionEnd) => void;
  /** resolves once both sockets are closed */
  readonly ended = new Promise<SessionEnd>((resolve) => (this.resolveEnded = resolve));
  /** what was relayed toward each side */
  readonly toward: Record<Side, FlowStats> = {
    client: { frames: 0, bytes: 0, peakQueuedBytes: 0 },
    upstream: { frames: 0, bytes: 0, peakQueuedBytes: 0 },
  };
  private readonly upstreamWs: WebSocket;

  constructor(
    private readonly client: WebSocket,
    private readonly upstream: OpenUpstream,
    private readonly hooks: UpstreamHooks,
  ) {
    this.upstreamWs = upstream.ws;
  }

  /** Whether the relay has stopped reading this side (what it sends waits until the other side has taken more). */
  holdingBack(side: Side): boolean {
    return this.socket(side).isPaused;
  }

  /** Starts relaying: what the upstream sent before is passed on first. */
  start(): void {
    const { client, upstreamWs: up } = this;
    this.upstream.stopKeeping();
    for (const side of ['client', 'upstream'] as const) {
      const ws = this.socket(side);
      ws.on('error', (err: Error) => (this.errors[side] ??= err.message));
      ws.on('close', (code: number, reason: Buffer) => this.sideClosed(side, code, reason));
    }
    client.on('message', (data: Buffer, isBinary: boolean) => this.forward('upstream', data, isBinary));
    up.on('message', (data: Buffer, isBinary: boolean) => this.forward('client', data, isBinary));
    // read again from the next tick on, after what came before
    if (!this.upstream.earlyClose) up.resume();
    for (const [data, isBinary] of this.upstream.early) this.forward('client', data, isBinary);
    this.upstream.early.length = 0;
    const early = this.upstream.earlyClose;
    if (early) this.sideClosed('upstream', early.code, early.reason);
  }

  /** Closes both sides with 1001 (the server is going away). */
  shutdown(reason: string): void {
    if (this.state === 'closed') return;
    this.end ??= { by: 'proxy', code: 1001, reason, error: null };
    this.state = 'closing';
    for (const side of ['client', 'upstream'] as const) this.closeSide(side, 1001, reason);
  }

  private socket(side: Side): WebSocket {
    return side === 'client' ? this.client : this.upstreamWs;
  }

  private other(side: Side): Side {
    return side === 'client' ? 'upstream' : 'client';
  }

  private forward(to: Side, data: Buffer, isBinary: boolean): void {
    const target = this.socket(to);
    // a side being closed takes nothing more
    if (target.readyState !== WebSocket.OPEN) return;
    const source = this.socket(this.other(to));
    const bytes = to === 'client' ? this.hooks.scrub(data) : data;
    if (to === 'client') this.hooks.observe(bytes, isBinary);
    target.send(bytes, { binary: isBinary }, () => this.drained(source, target));
    const flow = this.toward[to];
    flow.frames++;
    flow.bytes += bytes.length;
    const queued = target.bufferedAmount;
    if (queued > flow.peakQueuedBytes) flow.peakQueuedBytes = queued;
    if (queued > HIGH_WATER_BYTES && this.state === 'relaying') source.pause();
  }

  /** A frame toward `target` was written out: its sender is read again once the queue is low. */
  private drained(source: WebSocket, target: WebSocket): void {
    if (source.isPaused && this.state === 'relaying' && target.bufferedAmount <= LOW_WATER_BYTES) source.resume();
  }

  private sideClosed(side: Side, code: number, reasonBytes: Buffer): void {
    if (this.closedSides[side]) return;
    this.closedSides[side] = true;
    const reason = reasonBytes.toString('utf8');
    this.end ??= { by: side, code, reason, error: this.errors[side] };
    const other = this.other(side);
    if (!this.closedSides[other] && this.state === 'relaying') {
      this.state = 'closing';
      if (side === 'upstream') {
        // 1005: a close frame without a code, passed on as one
        if (code === 1005) this.closeSide(other);
        else if (sendableCloseCode(code)) this.closeSide(other, code, this.hooks.scrub(Buffer.from(reason)).toString('utf8'));
        else this.closeSide(other, 1014, 'The upstream connection was lost');
      } else if (code === 1005) this.closeSide(other);
      else if (sendableCloseCode(code)) this.closeSide(other, code, reason);
      else this.closeSide(other, 1001, 'The client went away');
    }
    if (this.closedSides.client && this.closedSides.upstream) {
      this.state = 'closed';
      this.resolveEnded(this.end);
    }
  }

  /** Closes a side still open; its close answer must be read, so it is no longer held back. */
  private closeSide(side: Side, code?: number, reason?: string): void {
    const ws = this.socket(side);
    ws.resume();
    if (ws.readyState !== WebSocket.OPEN) return;
    if (code === undefined) ws.close();
    else ws.close(code, closeReason(reason ?? ''));
  }
}
