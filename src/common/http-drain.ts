import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';

export interface DrainOutcome {
  /** connections still open at the bound, closed by force (their calls are cut) */
  forced: number;
  /** calls answered while draining (in flight at the signal, or arriving on a kept-alive connection) */
  answered: number;
}

/**
 * How long an idle kept-alive connection stays open once draining. Closing it at once races with the client's
 * next call already on the wire (the client sees a reset for a call it sent); left open a moment, that call is
 * answered with `Connection: close` instead, and the client takes its next call elsewhere.
 */
export const IDLE_GRACE_MS = 1000;

/**
 * A bounded shutdown of the HTTP server. `server.close()` alone stops accepting connections but lets a
 * keep-alive client go on sending requests on its open connection for as long as it likes, so a busy client
 * keeps an old process serving. Here, once draining: every answer says `Connection: close`, idle connections
 * close after IDLE_GRACE_MS (and as soon as they turn idle after that), and whatever is still open at the
 * bound is cut.
 */
export class HttpDrain {
  private draining = false;
  private closingIdle = false;
  private readonly inFlight = new Set<ServerResponse>();
  private answered = 0;

  constructor(private readonly server: Server) {
    // ahead of every other request listener, so that no handler writes its headers before the mark
    server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
      this.inFlight.add(res);
      if (this.draining) res.setHeader('Connection', 'close');
      res.once('close', () => {
        this.inFlight.delete(res);
        if (this.draining) {
          this.answered++;
          // an answer whose headers left before the drain began kept its connection open: close it once idle
          if (this.closingIdle) setImmediate(() => this.server.closeIdleConnections());
        }
      });
    });
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Stops accepting, lets calls in flight finish for at most `timeoutMs`, then cuts what is left. */
  async drain(timeoutMs: number): Promise<DrainOutcome> {
    if (this.draining) throw new Error('the HTTP server is already draining');
    this.draining = true;
    for (const res of this.inFlight) {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    }
    // net.Server's close: stop accepting, called back once every connection has ended. (http.Server's close
    // would also close idle connections at once, the race IDLE_GRACE_MS avoids.)
    const allClosed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      NetServer.prototype.close.call(this.server, () => resolve());
    });
    const grace = setTimeout(() => {
      this.closingIdle = true;
      this.server.closeIdleConnections();
    }, Math.min(IDLE_GRACE_MS, timeoutMs));

    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      allClosed.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    clearTimeout(grace);
    let forced = 0;
    if (timedOut) {
      forced = this.inFlight.size;
      this.server.closeAllConnections();
      await allClosed;
    }
    return { forced, answered: this.answered };
  }
}
