import * as net from 'node:net';

export interface RawAnswer {
  /** null when the connection closed (or was reset) before a whole answer came */
  status: number | null;
  headers: Record<string, string>;
  body: string;
  json: any;
  /** the socket error, e.g. ECONNRESET */
  error?: string;
  /** ms from the first byte written to the answer (or the close) */
  ms: number;
  /** ms from the first byte written to the connection's close, when it closed within `waitClose` */
  closedAfterMs?: number;
}

export interface RawOptions {
  /** bytes to write after the head, all at once (or as a generator of chunks, written as fast as the socket takes them) */
  body?: Buffer | string | (() => AsyncIterable<Buffer | string>);
  /** give up after this long (then status is null) */
  timeoutMs?: number;
  /** after the answer, keep watching this long for the server to close the connection */
  waitCloseMs?: number;
}

/** Sends bytes exactly as given (no client library in between) and reads the first HTTP answer. */
export function rawRequest(port: number, head: string | Buffer, opts: RawOptions = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const started = performance.now();
    let received = Buffer.alloc(0);
    let answer: RawAnswer | undefined;
    let error: string | undefined;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const done = answer ?? { status: null, headers: {}, body: '', json: undefined, ms: performance.now() - started };
      if (error) done.error = error;
      if (closedAt !== undefined) done.closedAfterMs = closedAt - started;
      resolve(done);
    };
    let closedAt: number | undefined;
    const timer = setTimeout(finish, opts.timeoutMs ?? 20_000);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (answer) return;
      answer = parseAnswer(received, started);
      if (!answer) return;
      if (!opts.waitCloseMs) finish();
      else {
        clearTimeout(timer);
        setTimeout(finish, opts.waitCloseMs);
      }
    });
    socket.on('close', () => {
      closedAt = performance.now();
      finish();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('connect', async () => {
      socket.write(head);
      const body = opts.body;
      if (body === undefined) return;
      if (typeof body === 'function') {
        try {
          for await (const chunk of body()) {
            if (socket.destroyed || settled) return;
            if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
          }
        } catch {
          /* the server closed the connection */
        }
      } else socket.write(body);
    });
  });
}

function parseAnswer(buf: Buffer, started: number): RawAnswer | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(lines[0].split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  if (buf.length < end + 4 + length) return undefined;
  const body = buf.subarray(end + 4, end + 4 + length).toString('utf8');
  let json: any;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status, headers, body, json, ms: performance.now() - started };
}
