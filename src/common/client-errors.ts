import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { AppException } from './app-exception';
import { AppExceptionFilter } from './http-exception.filter';
import { newRequestId } from './ids';
import { JsonLogger } from './logger';

interface InFlight {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
}

export interface ClientErrorLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

/**
 * Requests Node refuses before (or while) the app sees them: malformed HTTP, headers over the size limit, headers or
 * a body not received in time. Node's own answers are bare (`400 Bad Request`, no body); these get the OpenAI error
 * envelope, through the request's own response when the app has one under way and has not answered yet, else
 * written to the socket. Returns the hook that tells it which request a socket is serving.
 */
export function answerClientErrors(
  server: Server,
  filter: AppExceptionFilter,
  logger: JsonLogger,
  limits: ClientErrorLimits,
): (req: IncomingMessage, res: ServerResponse, path: string) => void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  // Node checks both timeouts on this interval (30 s by default); read when the server starts listening
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)));

  const serving = new WeakMap<Socket, InFlight>();

  server.on('clientError', (err: NodeJS.ErrnoException & { reason?: string }, socket: Socket) => {
    const current = serving.get(socket);
    if (current && !current.req.complete && !current.res.headersSent && !current.res.writableEnded) {
      // the app holds this request and is still reading its body: answer through its response, then close
      current.res.shouldKeepAlive = false;
      current.res.setHeader('Connection', 'close');
      current.res.once('finish', () => socket.destroy());
      filter.answer(clientErrorAnswer(err), current.path, current.res);
      return;
    }
    // an answer under way (this error is about data pipelined behind its request), or one given while the body was
    // still coming (this error is about that body): the connection is beyond repair
    const busy = current && (!current.res.writableFinished || !current.req.complete);
    if (busy || err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const answer = clientErrorAnswer(err);
    const body = JSON.stringify(answer.toBody());
    const requestId = newRequestId();
    socket.end(
      `HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? 'Bad Request'}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-ID: ${requestId}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
    socket.once('finish', () => socket.destroy());
    logger.write('info', 'request', {
      request_id: requestId,
      status: answer.status,
      error_type: answer.toBody().error.type,
      error_code: answer.toBody().error.code,
      reason: err.code,
    });
  });

  return (req, res, path) => {
    const socket = req.socket;
    serving.set(socket, { req, res, path });
  };
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 413: 'Payload Too Large', 431: 'Request Header Fields Too Large' };

function clientErrorAnswer(err: NodeJS.ErrnoException & { reason?: string }): AppException {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new AppException('request_timeout', 'The request was not received in time (headers within HEADERS_TIMEOUT_MS, the whole request within REQUEST_TIMEOUT_MS)');
    case 'HPE_HEADER_OVERFLOW':
      return new AppException('headers_too_large', 'The request headers are too large');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new AppException('body_too_large', 'The request body’s chunk extensions are too large');
    default: {
      const reason = typeof err.reason === 'string' && err.reason ? `: ${err.reason}` : '';
      return new AppException('invalid_request', `The request is not valid HTTP${reason}`, { code: 'malformed_request' });
    }
  }
}
