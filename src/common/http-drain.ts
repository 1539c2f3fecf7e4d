import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, Socket } from 'node:net';

export interface DrainOutcome {
  /** connections still open at the bound, closed by force (the calls on them are cut) */
  forced: number;
}

/**
 * How long an idle kept-alive connection stays open once draining. Closing it at once races with the client's
 * next call already on the wire (the client sees a reset for a call it sent); left open a moment, that call is
 * answered with `Connection: close` instead, and the client takes its next call elsewhere.
 */
export const IDLE_GRACE_MS = 1000;

/** How often, after the grace, connections that have turned idle (an answer in flight has ended) are closed. */
const IDLE_SWEEP_MS = 100;

/**
 * A bounded shutdown of the HTTP server. `server.close()` alone stops accepting connections but lets a
 * keep-alive client go on sending requests on its open connection for as long as it likes, so a busy client
 * keeps an old process serving. Here, once draining: every answer not yet begun says `Connection: close`,
 * idle connections close after IDLE_GRACE_MS (and as soon as they turn idle after that), and whatever is
 * still open at the bound is cut. Outside a drain it costs one boolean test per request.
 */
export class HttpDrain {
  private draining = false;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly server: Server) {
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    // ahead of every other request listener, so that no handler writes its headers before the mark
    server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
      if (this.draining) res.setHeader('Connection', 'close');
    });
  }

  /** Stops accepting, lets calls in flight finish for at most `timeoutMs`, then cuts what is left. */
  async drain(timeoutMs: number): Promise<DrainOutcome> {
    if (this.draining) throw new Error('the HTTP server is already draining');
    this.draining = true;
    for (const socket of this.sockets) {
      // the answer being prepared on this connection, if any (Node keeps it there until it ends)
      const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (res && !res.headersSent) res.setHeader('Connection', 'close');
    }
    // net.Server's close: stop accepting, called back once every connection has ended. (http.Server's close
    // would also close idle connections at once, the race IDLE_GRACE_MS avoids.)
    const allClosed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      NetServer.prototype.close.call(this.server, () => resolve());
    });
    let sweep: NodeJS.Timeout | undefined;
    const grace = setTimeout(() => {
      this.server.closeIdleConnections();
      // an answer whose headers left before the drain began kept its connection open: close it once idle
      sweep = setInterval(() => this.server.closeIdleConnections(), IDLE_SWEEP_MS);
    }, Math.min(IDLE_GRACE_MS, timeoutMs));

    let bound: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      allClosed.then(() => false),
      new Promise<boolean>((resolve) => {
        bound = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(bound);
    clearTimeout(grace);
    clearInterval(sweep);
    let forced = 0;
    if (timedOut) {
      forced = this.sockets.size;
      this.server.closeAllConnections();
      await allClosed;
    }
    return { forced };
  }
}
