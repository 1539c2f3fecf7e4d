/**
 * Fake of OpenAI's Realtime API WebSocket (`GET /v1/realtime`), on the fake upstream's HTTP server.
 *
 * It checks the bearer key (401 in OpenAI's envelope without an `sk-` key), answers `session.created`, keeps the
 * conversation (`conversation.item.create`), and answers `response.create` with the GA event sequence:
 * `response.created`, the output item and content part, `response.output_text.delta`s (or
 * `response.output_audio.delta` and `response.output_audio_transcript.delta` when audio is asked for) and
 * `response.done` with usage (input/output/total, cached tokens once the conversation has a long enough prefix).
 * Binary frames are echoed as binary frames. It records every session (the key, headers, URL, what it received) and
 * misbehaves on demand: refuse the upgrade with a status, or close with a code after some events.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';

export type RealtimeFault =
  /** answer the upgrade request with this HTTP status and body (OpenAI's error envelope by default) */
  | { kind: 'refuse'; status: number; body?: unknown; retryAfter?: string }
  /** accept, then close with this code once the client has sent `afterEvents` events (0: right after session.created) */
  | { kind: 'close'; code: number; reason?: string; afterEvents?: number };

export interface FakeRealtimeSession {
  /** the key of the Authorization header */
  key: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** client events (parsed JSON), and binary frames as Buffers, in order */
  received: (Record<string, any> | Buffer)[];
  ws: WebSocket;
  /** the close the fake saw, once the socket is closed */
  closed: { code: number; reason: string } | null;
  /** bytes of burst frames handed to the socket */
  burstSentBytes: number;
  /**
   * Sends `count` binary frames of `size` bytes (frame i starts with i as a 32-bit big-endian number) as fast as the
   * socket takes them, keeping at most 1 MiB queued: a reader that does not read holds it back.
   */
  burst(count: number, size: number): Promise<void>;
  close(code: number, reason?: string): void;
}

export interface FakeRealtime {
  sessions: FakeRealtimeSession[];
  /** keys of every upgrade request, refused ones included */
  keysSeen: string[];
  enqueue(...faults: RealtimeFault[]): void;
  reset(): void;
}

const BURST_QUEUE_BYTES = 1024 * 1024;

const id = (prefix: string) => `${prefix}_${randomBytes(10).toString('hex')}`;
const words = (text: string) => Math.max(1, text.split(/\s+/).filter(Boolean).length);

function errorBody(status: number): unknown {
  if (status === 401) {
    return { error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key', param: null } };
  }
  if (status === 429) return { error: { message: 'Rate limit reached for realtime sessions.', type: 'requests', code: 'rate_limit_exceeded', param: null } };
  return { error: { message: `Request failed with status ${status}.`, type: status >= 500 ? 'server_error' : 'invalid_request_error', code: null, param: null } };
}

function refuse(socket: Duplex, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  const head = [
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 429 ? 'Too Many Requests' : 'Error'}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(text)}`,
    `x-request-id: ${id('req')}`,
    'Connection: close',
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${text}`);
}

/** Answers WebSocket upgrades for /v1/realtime on `server`. */
export function attachFakeRealtime(server: Server): FakeRealtime {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const faults: RealtimeFault[] = [];
  const fake: FakeRealtime = {
    sessions: [],
    keysSeen: [],
    enqueue: (...f) => void faults.push(...f),
    reset() {
      fake.sessions.length = 0;
      fake.keysSeen.length = 0;
      faults.length = 0;
    },
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/realtime') return refuse(socket, 404, errorBody(404));
    const key = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    fake.keysSeen.push(key);
    if (!key.startsWith('sk-')) return refuse(socket, 401, errorBody(401));
    const fault = faults.shift();
    if (fault?.kind === 'refuse') {
      return refuse(socket, fault.status, fault.body ?? errorBody(fault.status), fault.retryAfter ? { 'retry-after': fault.retryAfter } : {});
    }
    wss.once('headers', (headers) => headers.push(`x-request-id: ${id('req')}`));
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = startSession(ws, req, key, fault?.kind === 'close' ? fault : undefined);
      fake.sessions.push(session);
    });
  });
  return fake;
}

function startSession(ws: WebSocket, req: IncomingMessage, key: string, closeFault?: Extract<RealtimeFault, { kind: 'close' }>): FakeRealtimeSession {
  const url = new URL(req.url ?? '/', 'http://fake');
  const model = url.searchParams.get('model') ?? 'gpt-realtime';
  /** the conversation's text so far, in tokens (what a later response reads again) */
  let historyTokens = 0;
  /** the previous response's input: the prefix a later response finds cached */
  let lastInputTokens = 0;
  let lastUserText = '';
  let responses = 0;
  const conversationId = id('conv');
  const sessionId = id('sess');
  const send = (event: Record<string, unknown>) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ event_id: id('event'), ...event }));
  };

  const session: FakeRealtimeSession = {
    key,
    url: req.url ?? '',
    headers: { ...req.headers },
    received: [],
    ws,
    closed: null,
    burstSentBytes: 0,
    async burst(count, size) {
      for (let i = 0; i < count; i++) {
        if (ws.readyState !== WebSocket.OPEN) return;
        const frame = Buffer.alloc(size, i % 251);
        frame.writeUInt32BE(i, 0);
        // the next frame once this one is written (or at once while little is queued)
        await new Promise<void>((resolve) => {
          ws.send(frame, { binary: true }, (err) => {
            if (!err) session.burstSentBytes += size;
            resolve();
          });
          if (ws.bufferedAmount <= BURST_QUEUE_BYTES) resolve();
        });
      }
    },
    close(code, reason) {
      ws.close(code, reason);
    },
  };
  ws.on('close', (code, reason) => (session.closed = { code, reason: reason.toString() }));
  ws.on('error', () => undefined);

  const closeIfDue = () => {
    if (closeFault && session.received.length >= (closeFault.afterEvents ?? 0)) ws.close(closeFault.code, closeFault.reason);
  };

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      session.received.push(data);
      ws.send(data, { binary: true });
      return closeIfDue();
    }
    let event: Record<string, any>;
    try {
      event = JSON.parse(data.toString('utf8'));
    } catch {
      send({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_json', message: 'The event is not valid JSON.', param: null, event_id: null } });
      return;
    }
    session.received.push(event);
    switch (event.type) {
      case 'session.update':
        send({ type: 'session.updated', session: { type: 'realtime', object: 'realtime.session', id: sessionId, model, ...event.session } });
        break;
      case 'conversation.item.create': {
        const item = { id: event.item?.id ?? id('item'), status: 'completed', ...event.item };
        const text = (event.item?.content ?? []).map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join(' ');
        if (event.item?.role === 'user' && text) lastUserText = text;
        historyTokens += words(text) + 4;
        send({ type: 'conversation.item.added', previous_item_id: null, item });
        send({ type: 'conversation.item.done', previous_item_id: null, item });
        break;
      }
      case 'response.create':
        respond(event.response ?? {});
        break;
      default:
        break;
    }
    closeIfDue();
  });

  send({
    type: 'session.created',
    session: {
      type: 'realtime',
      object: 'realtime.session',
      id: sessionId,
      model,
      output_modalities: ['audio'],
      instructions: "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.",
      tool_choice: 'auto',
      tools: [],
      tracing: null,
      truncation: 'auto',
      prompt: null,
      expires_at: Math.floor(Date.now() / 1000) + 3600,
      max_output_tokens: 'inf',
    },
  });
  closeIfDue();

  function respond(params: Record<string, any>): void {
    responses++;
    const audio = Array.isArray(params.output_modalities) && params.output_modalities.includes('audio');
    const text = `Echo ${responses}: ${params.instructions ?? (lastUserText || 'hello')}`;
    const responseId = id('resp');
    const itemId = id('item');
    const base = { object: 'realtime.response', id: responseId, conversation_id: conversationId, output_modalities: audio ? ['audio'] : ['text'], max_output_tokens: 'inf', metadata: params.metadata ?? null };
    send({ type: 'response.created', response: { ...base, status: 'in_progress', status_details: null, output: [], usage: null } });
    send({ type: 'response.output_item.added', response_id: responseId, output_index: 0, item: { id: itemId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    const part = audio ? { type: 'output_audio', transcript: '' } : { type: 'output_text', text: '' };
    const where = { response_id: responseId, item_id: itemId, output_index: 0, content_index: 0 };
    send({ type: 'response.content_part.added', ...where, part });
    const pieces = text.match(/\S+\s*/g) ?? [text];
    for (const piece of pieces) {
      if (audio) {
        send({ type: 'response.output_audio.delta', ...where, delta: randomBytes(480).toString('base64') });
        send({ type: 'response.output_audio_transcript.delta', ...where, delta: piece });
      } else send({ type: 'response.output_text.delta', ...where, delta: piece });
    }
    const donePart = audio ? { type: 'output_audio', transcript: text } : { type: 'output_text', text };
    if (audio) {
      send({ type: 'response.output_audio.done', ...where });
      send({ type: 'response.output_audio_transcript.done', ...where, transcript: text });
    } else send({ type: 'response.output_text.done', ...where, text });
    send({ type: 'response.content_part.done', ...where, part: donePart });
    const item = { id: itemId, type: 'message', status: 'completed', role: 'assistant', content: [donePart] };
    send({ type: 'response.output_item.done', response_id: responseId, output_index: 0, item });

    const instructionTokens = 80;
    const inputText = instructionTokens + historyTokens;
    const outputText = words(text) + 2;
    const outputAudio = audio ? pieces.length * 12 : 0;
    // cached in blocks of 64 tokens
    const cached = Math.floor(lastInputTokens / 64) * 64;
    lastInputTokens = inputText;
    const usage = {
      total_tokens: inputText + outputText + outputAudio,
      input_tokens: inputText,
      output_tokens: outputText + outputAudio,
      input_token_details: {
        text_tokens: inputText,
        audio_tokens: 0,
        image_tokens: 0,
        cached_tokens: cached,
        cached_tokens_details: { text_tokens: cached, audio_tokens: 0, image_tokens: 0 },
      },
      output_token_details: { text_tokens: outputText, audio_tokens: outputAudio },
    };
    historyTokens += outputText;
    send({ type: 'response.done', response: { ...base, status: 'completed', status_details: null, output: [item], usage } });
  }

  return session;
}
