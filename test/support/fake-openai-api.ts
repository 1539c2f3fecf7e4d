/**
 * The rest of the OpenAI REST API for the fake upstream (fake-upstream.ts routes every request it does not serve
 * itself here, before reading the body): embeddings, legacy completions, moderations, files, uploads, batches, vector
 * stores, conversations, stored chat completions, images, audio, containers, fine-tuning, evals and videos.
 *
 * Each answer is in OpenAI's wire format (the official SDK parses it), carries `x-request-id: req_…`, and objects are
 * kept in memory per fake instance under ids with OpenAI's prefixes, so they can be listed, read, changed and deleted
 * again. Multipart uploads are parsed as they arrive (each file part counted and hashed, its content kept only when
 * small), and binary answers are generated as they are written, so a 200 MB upload or download never sits in memory.
 * Objects that move on by themselves upstream (batches, fine-tuning jobs, eval runs, videos) are finished when they
 * are next read.
 */
import * as http from 'node:http';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';
import type { Fault, FakeUpstreamOptions, RecordedRequest } from './fake-upstream';

// ---------------------------------------------------------------------------------------------
// public surface
// ---------------------------------------------------------------------------------------------

/** One file part of a multipart request, as it arrived. */
export interface ReceivedFile {
  field: string;
  filename: string;
  contentType: string;
  bytes: number;
  sha256: string;
}

/** A request to one of these routes, as `fake.requests` holds it (JSON bodies in `body`/`rawBody`, as for the others). */
export interface ApiRecordedRequest extends RecordedRequest {
  /** the `x-request-id` the fake answered with */
  requestId: string;
  /** bytes of the request body as received */
  requestBytes: number;
  /** multipart requests: the text fields and the file parts (bytes and SHA-256, not the content) */
  multipart?: { fields: Record<string, string[]>; files: ReceivedFile[] };
  /** binary answers (file, audio, video content): what was written, set before the answer ends */
  response?: { status: number; contentType: string; bytes: number; sha256: string };
}

export interface SeedFileOptions {
  /** size of generated content (a deterministic pseudo-random pattern, produced as it is sent) */
  bytes?: number;
  /** or this exact content */
  content?: string | Buffer;
  filename?: string;
  purpose?: string;
}

export interface SeedChatCompletionOptions {
  model?: string;
  messages: { role: string; content: string }[];
  metadata?: Record<string, string>;
}

export interface FakeOpenAiApi {
  /** whether a request is one of these routes (decided on method and path alone, before the body is read) */
  handles(method: string, pathname: string): boolean;
  /** answers the request, reading its body as it streams in */
  handle(req: http.IncomingMessage, res: http.ServerResponse, receivedAt: number): Promise<void>;
  /** a file that exists upstream without having been uploaded (e.g. a large batch output) */
  seedFile(opts: SeedFileOptions): any;
  /** a stored chat completion (as made by `store: true`), for the stored-completions routes */
  seedChatCompletion(opts: SeedChatCompletionOptions): any;
  /** what the fake holds about a file: its object, and the SHA-256 of its content as received or generated */
  file(id: string): { object: any; sha256: string | null } | undefined;
  /** the requests these routes received, oldest first; `path` filters on the path without the query */
  recorded(method?: string, path?: string | RegExp): ApiRecordedRequest[];
}

export interface FakeOpenAiApiDeps {
  /** the fake's shared request log */
  requests: RecordedRequest[];
  /** the next queued (or default) fault */
  /** the fault for a request (made with this API key, if any) */
  nextFault(apiKey?: string): Fault | undefined;
  options: FakeUpstreamOptions;
}

// ---------------------------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------------------------

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function alnum(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALNUM[randomInt(ALNUM.length)];
  return s;
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function tokensOf(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function wordCount(text: string): number {
  return Math.max(1, text.split(/\s+/).filter(Boolean).length);
}

function isObject(v: unknown): v is Record<string, any> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** An OpenAI error answer: status and envelope. */
class ApiError {
  constructor(
    readonly status: number,
    readonly message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 404 || status < 500 ? 'invalid_request_error' : 'server_error',
  ) {}

  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function notFound(what: string, id: string, param = 'id'): ApiError {
  return new ApiError(404, `No such ${what}: ${id}`, param);
}

function missing(param: string): ApiError {
  return new ApiError(400, `Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

function invalid(param: string, message: string): ApiError {
  return new ApiError(400, message, param, 'invalid_value');
}

function requireString(body: Record<string, any>, param: string): string {
  const v = body[param];
  if (v === undefined || v === null || v === '') throw missing(param);
  if (typeof v !== 'string') throw invalid(param, `Invalid type for '${param}': expected a string, but got ${typeof v} instead.`);
  return v;
}

function optionalInt(v: unknown, param: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw invalid(param, `Invalid '${param}': expected an integer from ${min} to ${max}.`);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// streaming multipart parser
// ---------------------------------------------------------------------------------------------

interface PartHeaders {
  name: string;
  filename: string | null;
  contentType: string;
}

interface MultipartSink {
  start(part: PartHeaders): void;
  data(chunk: Buffer): void;
  end(): void;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_PART_HEADERS = 16 * 1024;

function dispositionParam(header: string, key: string): string | null {
  const m = new RegExp(`(?:^|;)\\s*${key}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(header) ?? new RegExp(`(?:^|;)\\s*${key}=([^;\\s]+)`, 'i').exec(header);
  return m ? m[1].replace(/\\(.)/g, '$1') : null;
}

/**
 * multipart/form-data (RFC 7578) parsed chunk by chunk: part data is handed on as it arrives and only the bytes that
 * could still be the start of a boundary are held back.
 */
class MultipartParser {
  private readonly delimiter: Buffer;
  private state: 'preamble' | 'after-delimiter' | 'headers' | 'body' | 'done' = 'preamble';
  // the body starts with the boundary line itself, which the delimiter (CRLF "--" boundary) expects after a line end
  private pending: Buffer = Buffer.from('\r\n');

  constructor(
    boundary: string,
    private readonly sink: MultipartSink,
  ) {
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  get complete(): boolean {
    return this.state === 'done';
  }

  write(chunk: Buffer): void {
    if (this.state === 'done') return;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      if (this.state === 'preamble' || this.state === 'body') {
        const at = this.pending.indexOf(this.delimiter);
        if (at === -1) {
          const keep = Math.min(this.pending.length, this.delimiter.length - 1);
          if (this.state === 'body' && this.pending.length > keep) this.sink.data(this.pending.subarray(0, this.pending.length - keep));
          this.pending = this.pending.subarray(this.pending.length - keep);
          return;
        }
        if (this.state === 'body') {
          if (at > 0) this.sink.data(this.pending.subarray(0, at));
          this.sink.end();
        }
        this.pending = this.pending.subarray(at + this.delimiter.length);
        this.state = 'after-delimiter';
      } else if (this.state === 'after-delimiter') {
        if (this.pending.length < 2) return;
        if (this.pending[0] === 0x2d && this.pending[1] === 0x2d) {
          this.state = 'done';
          this.pending = Buffer.alloc(0);
          return;
        }
        const eol = this.pending.indexOf(CRLF);
        if (eol === -1) {
          if (this.pending.length > 256) throw new ApiError(400, 'Malformed multipart body: bad boundary line.');
          return;
        }
        this.pending = this.pending.subarray(eol + 2);
        this.state = 'headers';
      } else if (this.state === 'headers') {
        let headerText: string;
        if (this.pending.length >= 2 && this.pending[0] === 0x0d && this.pending[1] === 0x0a) {
          headerText = '';
          this.pending = this.pending.subarray(2);
        } else {
          const end = this.pending.indexOf(HEADER_END);
          if (end === -1) {
            if (this.pending.length > MAX_PART_HEADERS) throw new ApiError(400, 'Malformed multipart body: part headers too large.');
            return;
          }
          headerText = this.pending.subarray(0, end).toString('utf8');
          this.pending = this.pending.subarray(end + 4);
        }
        this.sink.start(this.parseHeaders(headerText));
        this.state = 'body';
      } else {
        return;
      }
    }
  }

  private parseHeaders(text: string): PartHeaders {
    let disposition = '';
    let contentType = 'text/plain';
    for (const line of text.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon === -1) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-disposition') disposition = value;
      else if (name === 'content-type') contentType = value;
    }
    const name = dispositionParam(disposition, 'name');
    if (!/^form-data\b/i.test(disposition) || name === null) {
      throw new ApiError(400, 'Malformed multipart body: a part without Content-Disposition: form-data; name=….');
    }
    const filename = dispositionParam(disposition, 'filename');
    return { name, filename, contentType: filename === null ? 'text/plain' : contentType };
  }
}

/** Content of file parts up to this size is kept (so it can be read back); larger parts are only counted and hashed. */
const KEEP_CONTENT_BYTES = 4 * 1024 * 1024;
const MAX_FIELD_BYTES = 1024 * 1024;

interface UploadedFile extends ReceivedFile {
  /** the content, when small enough to keep */
  content: Buffer | null;
}

/** A parsed multipart request. */
class Form {
  readonly fields = new Map<string, string[]>();
  readonly files: UploadedFile[] = [];

  field(name: string): string | undefined {
    return this.fields.get(name)?.[0];
  }

  /** `name` or `name[]` repeated */
  list(name: string): string[] {
    return [...(this.fields.get(name) ?? []), ...(this.fields.get(`${name}[]`) ?? [])];
  }

  file(name: string): UploadedFile | undefined {
    return this.files.find((f) => f.field === name || f.field === `${name}[]`);
  }

  allFiles(name: string): UploadedFile[] {
    return this.files.filter((f) => f.field === name || f.field === `${name}[]`);
  }

  /** the text fields as a JSON-like object, nested names (`a[b]`) as objects and `a[]` as arrays */
  object(): Record<string, any> {
    const out: Record<string, any> = {};
    for (const [name, values] of this.fields) {
      const nested = /^([^[\]]+)\[([^[\]]+)\]$/.exec(name);
      if (name.endsWith('[]')) out[name.slice(0, -2)] = values;
      else if (nested) out[nested[1]] = { ...(isObject(out[nested[1]]) ? out[nested[1]] : {}), [nested[2]]: values[0] };
      else out[name] = values[0];
    }
    return out;
  }

  summary(): NonNullable<ApiRecordedRequest['multipart']> {
    return {
      fields: Object.fromEntries(this.fields),
      files: this.files.map(({ content: _content, ...f }) => f),
    };
  }
}

function readMultipart(req: http.IncomingMessage, boundary: string): Promise<{ form: Form; bytes: number }> {
  const form = new Form();
  let bytes = 0;
  let field: { name: string; chunks: Buffer[]; size: number } | null = null;
  let file: { info: UploadedFile; hash: ReturnType<typeof createHash>; chunks: Buffer[] | null } | null = null;
  const parser = new MultipartParser(boundary, {
    start(part) {
      if (part.filename === null) field = { name: part.name, chunks: [], size: 0 };
      else {
        file = {
          info: { field: part.name, filename: part.filename, contentType: part.contentType, bytes: 0, sha256: '', content: null },
          hash: createHash('sha256'),
          chunks: [],
        };
      }
    },
    data(chunk) {
      if (field) {
        field.size += chunk.length;
        if (field.size > MAX_FIELD_BYTES) throw new ApiError(400, `Multipart field '${field.name}' is too large.`);
        field.chunks.push(Buffer.from(chunk));
      } else if (file) {
        file.info.bytes += chunk.length;
        file.hash.update(chunk);
        if (file.chunks && file.info.bytes <= KEEP_CONTENT_BYTES) file.chunks.push(Buffer.from(chunk));
        else file.chunks = null;
      }
    },
    end() {
      if (field) {
        const values = form.fields.get(field.name) ?? [];
        values.push(Buffer.concat(field.chunks).toString('utf8'));
        form.fields.set(field.name, values);
        field = null;
      } else if (file) {
        file.info.sha256 = file.hash.digest('hex');
        file.info.content = file.chunks ? Buffer.concat(file.chunks) : null;
        form.files.push(file.info);
        file = null;
      }
    },
  });
  return new Promise((resolve, reject) => {
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      bytes += chunk.length;
      try {
        parser.write(chunk);
      } catch (err) {
        failed = true;
        req.resume();
        reject(err);
      }
    });
    req.on('end', () => {
      if (failed) return;
      if (!parser.complete) reject(new ApiError(400, 'Malformed multipart body: it ends before its closing boundary.'));
      else resolve({ form, bytes });
    });
    req.on('error', reject);
  });
}

const MAX_JSON_BYTES = 64 * 1024 * 1024;

function readRaw(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_JSON_BYTES) chunks.push(c);
    });
    req.on('end', () => (size > MAX_JSON_BYTES ? reject(new ApiError(413, 'Request body too large.')) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// generated content
// ---------------------------------------------------------------------------------------------

const PATTERN_CHUNK = 64 * 1024;

/** A deterministic pseudo-random byte stream of `size` bytes for `seed`, made 64 KiB at a time. */
export function* patternChunks(seed: string, size: number): Generator<Buffer> {
  const block = Buffer.alloc(PATTERN_CHUNK);
  const key = createHash('sha256').update(seed).digest();
  for (let i = 0; i < PATTERN_CHUNK / 32; i++) createHash('sha256').update(key).update(String(i)).digest().copy(block, i * 32);
  for (let offset = 0, k = 0; offset < size; offset += PATTERN_CHUNK, k++) {
    const chunk = Buffer.from(block.subarray(0, Math.min(PATTERN_CHUNK, size - offset)));
    // the chunk number makes the stream aperiodic, so a dropped or repeated chunk changes the hash
    if (chunk.length >= 8) chunk.writeBigUInt64BE(BigInt(k) ^ key.readBigUInt64BE(0), 0);
    yield chunk;
  }
}

function* bufferChunks(buf: Buffer, size = PATTERN_CHUNK): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** A small real PNG (solid colour from the seed), as image routes answer in `b64_json`. */
function pngImage(seed: string, width = 16, height = 16): Buffer {
  const [r, g, b] = createHash('sha256').update(seed).digest();
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const SPEECH_FORMATS: Record<string, string> = {
  mp3: 'audio/mpeg',
  opus: 'audio/opus',
  aac: 'audio/aac',
  flac: 'audio/flac',
  wav: 'audio/wav',
  pcm: 'audio/pcm',
};

/** The audio `POST /v1/audio/speech` answers for a body: deterministic, about 1 KiB per character of input. */
export function speechAudio(body: { model?: string; input: string; voice?: unknown; response_format?: string; speed?: number }): Buffer {
  const format = body.response_format ?? 'mp3';
  const voice = typeof body.voice === 'string' ? body.voice : JSON.stringify(body.voice ?? null);
  const seed = `${body.model}\n${voice}\n${format}\n${body.speed ?? 1}\n${body.input}`;
  const size = 2048 + body.input.length * 1024;
  const parts: Buffer[] = [];
  if (format === 'mp3') parts.push(Buffer.from([0x49, 0x44, 0x33, 0x04, 0, 0, 0, 0, 0, 0]));
  else if (format === 'wav') parts.push(Buffer.from('RIFF\0\0\0\0WAVEfmt ', 'latin1'));
  else if (format === 'flac') parts.push(Buffer.from('fLaC', 'latin1'));
  else if (format === 'opus') parts.push(Buffer.from('OggS', 'latin1'));
  for (const c of patternChunks(seed, size)) parts.push(c);
  return Buffer.concat(parts);
}

const EMBEDDING_DIMENSIONS: Record<string, number> = {
  'text-embedding-3-small': 1536,
  'text-embedding-3-large': 3072,
  'text-embedding-ada-002': 1536,
};

/** The unit vector `POST /v1/embeddings` answers for one input (float32 values, as the base64 encoding carries them). */
export function fakeEmbedding(model: string, input: string, dimensions?: number): number[] {
  const dims = dimensions ?? EMBEDDING_DIMENSIONS[model] ?? 1536;
  const raw = new Float32Array(dims);
  let i = 0;
  for (let block = 0; i < dims; block++) {
    const digest = createHash('sha256').update(`${model}\n${block}\n${input}`).digest();
    for (let j = 0; j + 2 <= digest.length && i < dims; j += 2, i++) raw[i] = digest.readInt16BE(j) / 32768;
  }
  const norm = Math.sqrt(raw.reduce((s, v) => s + v * v, 0)) || 1;
  return Array.from(raw, (v) => Math.fround(v / norm));
}

function embeddingBase64(vector: number[]): string {
  const buf = Buffer.alloc(vector.length * 4);
  vector.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

// ---------------------------------------------------------------------------------------------
// answering
// ---------------------------------------------------------------------------------------------

interface Call {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** a JSON body (empty object when there was none) */
  body: Record<string, any>;
  /** a multipart body */
  form: Form | null;
  record: ApiRecordedRequest;
  requestId: string;
  receivedAt: number;
  closed: boolean;
  setCookie: boolean;
  /** drop the connection after this many body pieces of the answer */
  resetAfter?: number;
  firstByteMs: number;
  eventIntervalMs: number;
  deltaCount: number;
}

function commonHeaders(call: Call): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {
    'x-request-id': call.requestId,
    'openai-processing-ms': String(Math.max(1, Date.now() - call.receivedAt)),
    'openai-version': '2020-10-01',
    'openai-organization': 'fake-org',
  };
  if (call.setCookie) h['set-cookie'] = ['__cf_bm=fakeCookieValue123; path=/; HttpOnly; Secure; SameSite=None'];
  return h;
}

function sleep(call: Call, ms: number): Promise<void> {
  if (ms <= 0 || call.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      call.res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    call.res.once('close', done);
  });
}

function drained(call: Call): Promise<void> {
  if (call.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.res.off('drain', done);
      call.res.off('close', done);
      resolve();
    };
    call.res.once('drain', done);
    call.res.once('close', done);
  });
}

/** flush what was written, then close the socket without finishing the HTTP message */
function abortAfterFlush(call: Call): void {
  const socket = call.res.socket ?? call.req.socket;
  if (!socket || socket.destroyed) return;
  socket.end(() => socket.destroy());
  setTimeout(() => socket.destroy(), 2000).unref();
}

function resetSocket(call: Call): void {
  const socket: any = call.req.socket;
  if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
  else socket.destroy();
}

function sendBuffer(call: Call, status: number, contentType: string, buf: Buffer, extra: Record<string, string> = {}): void {
  if (call.closed) return;
  call.res.writeHead(status, { ...commonHeaders(call), ...extra, 'content-type': contentType, 'content-length': buf.length });
  if (call.resetAfter !== undefined) {
    call.res.write(buf.subarray(0, Math.floor(buf.length / 2)));
    abortAfterFlush(call);
    return;
  }
  call.res.end(buf);
}

async function sendJson(call: Call, status: number, obj: unknown): Promise<void> {
  await sleep(call, call.firstByteMs);
  sendBuffer(call, status, 'application/json', Buffer.from(JSON.stringify(obj)));
}

function sendError(call: Call, err: ApiError): void {
  sendBuffer(call, err.status, 'application/json', Buffer.from(JSON.stringify(err.body())));
}

async function sendText(call: Call, contentType: string, text: string): Promise<void> {
  await sleep(call, call.firstByteMs);
  sendBuffer(call, 200, contentType, Buffer.from(text));
}

/** Binary content written piece by piece with backpressure; `length` known up front or chunked encoding. */
async function sendBinary(call: Call, contentType: string, chunks: Iterable<Buffer>, length?: number): Promise<void> {
  await sleep(call, call.firstByteMs);
  if (call.closed) return;
  const headers: Record<string, string | string[] | number> = { ...commonHeaders(call), 'content-type': contentType };
  if (length !== undefined) headers['content-length'] = length;
  call.res.writeHead(200, headers);
  const hash = createHash('sha256');
  let bytes = 0;
  let n = 0;
  for (const chunk of chunks) {
    if (call.closed) return;
    if (call.resetAfter !== undefined && n >= call.resetAfter) {
      if (n === 0) call.res.flushHeaders();
      abortAfterFlush(call);
      return;
    }
    if (n > 0 && call.eventIntervalMs > 0) await sleep(call, call.eventIntervalMs);
    hash.update(chunk);
    bytes += chunk.length;
    n++;
    if (!call.res.write(chunk)) await drained(call);
    // answers without a length are streamed: let each piece leave on its own
    else if (length === undefined) await new Promise((r) => setImmediate(r));
  }
  if (call.closed) return;
  call.record.response = { status: 200, contentType, bytes, sha256: hash.digest('hex') };
  call.res.end();
}

/** `data:` events (with `event:` names when given), optionally terminated by `data: [DONE]`. */
async function sendSse(call: Call, events: { event?: string; data: unknown }[], done: boolean): Promise<void> {
  await sleep(call, call.firstByteMs);
  if (call.closed) return;
  call.res.writeHead(200, { ...commonHeaders(call), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const lines = events.map((e) => `${e.event ? `event: ${e.event}\n` : ''}data: ${JSON.stringify(e.data)}\n\n`);
  if (done) lines.push('data: [DONE]\n\n');
  for (let i = 0; i < lines.length; i++) {
    if (call.resetAfter !== undefined && i >= call.resetAfter) {
      if (i === 0) call.res.flushHeaders();
      abortAfterFlush(call);
      return;
    }
    if (i > 0 && call.eventIntervalMs > 0) await sleep(call, call.eventIntervalMs);
    if (call.closed) return;
    if (!call.res.write(lines[i])) await drained(call);
  }
  if (!call.closed) call.res.end();
}

// ---------------------------------------------------------------------------------------------
// lists
// ---------------------------------------------------------------------------------------------

interface ListRules {
  order: 'asc' | 'desc';
  limit: number;
  maxLimit?: number;
  /** answer first_id/last_id (most lists) */
  ids?: boolean;
}

/** A cursor page over `items` (oldest first) with `after`, `before`, `limit` and `order` as OpenAI's lists take them. */
function page<T extends { id: string }>(items: T[], query: URLSearchParams, rules: ListRules, view: (item: T) => unknown = (x) => x) {
  const limit = optionalInt(query.get('limit') ?? undefined, 'limit', 1, rules.maxLimit ?? 100) ?? rules.limit;
  const orderParam = query.get('order');
  if (orderParam !== null && orderParam !== 'asc' && orderParam !== 'desc') throw invalid('order', "Invalid 'order': expected one of asc, desc.");
  const ordered = (orderParam ?? rules.order) === 'asc' ? [...items] : [...items].reverse();
  let start = 0;
  let end = ordered.length;
  const after = query.get('after');
  if (after) {
    const at = ordered.findIndex((x) => x.id === after);
    if (at === -1) throw invalid('after', `Invalid 'after': no object with id '${after}' in this list.`);
    start = at + 1;
  }
  const before = query.get('before');
  if (before) {
    const at = ordered.findIndex((x) => x.id === before);
    if (at === -1) throw invalid('before', `Invalid 'before': no object with id '${before}' in this list.`);
    end = at;
    start = Math.max(start, end - limit);
  }
  const slice = ordered.slice(start, Math.min(end, start + limit));
  const data = slice.map(view);
  const out: Record<string, unknown> = { object: 'list', data };
  if (rules.ids !== false) {
    out.first_id = slice[0]?.id ?? null;
    out.last_id = slice.at(-1)?.id ?? null;
  }
  out.has_more = start + slice.length < end;
  return out;
}

/** `metadata[key]=value` query filters */
function metadataFilter(query: URLSearchParams): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of query) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m) out.push([m[1], v]);
  }
  return out;
}

function metadataOf(v: unknown, param = 'metadata'): Record<string, string> | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalid(param, `Invalid '${param}': expected an object of strings.`);
  if (Object.keys(v).length > 16) throw invalid(param, `Invalid '${param}': at most 16 keys.`);
  return v as Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// state
// ---------------------------------------------------------------------------------------------

type Content = { kind: 'bytes'; data: Buffer } | { kind: 'pattern'; size: number } | { kind: 'not-kept' };

interface StoredFile {
  object: any;
  content: Content;
  sha256: string | null;
}

interface StoredUpload {
  object: any;
  parts: Map<string, { object: any; bytes: number; content: Buffer | null }>;
}

interface StoredVectorStore {
  object: any;
  files: Map<string, any>;
  batches: Map<string, any>;
}

interface StoredConversation {
  object: any;
  items: any[];
}

interface StoredChatCompletion {
  object: any;
  messages: any[];
}

interface StoredContainer {
  object: any;
  files: Map<string, { object: any; content: Content; sha256: string | null }>;
}

interface StoredJob {
  object: any;
  events: any[];
  checkpoints: any[];
}

interface StoredEval {
  object: any;
  runs: Map<string, { object: any; items: any[]; outputItems: any[] }>;
}

const FILE_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'];
const BATCH_ENDPOINTS = ['/v1/responses', '/v1/chat/completions', '/v1/embeddings', '/v1/completions', '/v1/moderations'];

function echoOf(text: string): string {
  return `Echo: ${text}`;
}

function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return typeof messages === 'string' ? messages : '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (isObject(m) && m.role === 'user') return contentText(m.content);
  }
  return '';
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p === 'string' ? p : isObject(p) && typeof p.text === 'string' ? p.text : '')).filter(Boolean).join(' ');
  return '';
}

function chatCompletionObject(id: string, model: string, messages: any[], metadata: Record<string, string> | null) {
  const text = echoOf(lastUserText(messages));
  const prompt = tokensOf(messages.map((m) => contentText(m.content)).join(' '));
  const completion = wordCount(text);
  return {
    id,
    object: 'chat.completion',
    created: nowSec(),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_fake0000001',
    metadata: metadata ?? {},
  };
}

// ---------------------------------------------------------------------------------------------
// the routes
// ---------------------------------------------------------------------------------------------

type Handler = (call: Call) => Promise<void>;

interface Route {
  method: string;
  template: string;
  regex: RegExp;
  names: string[];
  handler: Handler;
  /** multipart bodies are parsed for this route (others must be JSON) */
  multipart: boolean;
}

export function createOpenAiApi(deps: FakeOpenAiApiDeps): FakeOpenAiApi {
  const files = new Map<string, StoredFile>();
  const uploads = new Map<string, StoredUpload>();
  const batches = new Map<string, any>();
  const vectorStores = new Map<string, StoredVectorStore>();
  const conversations = new Map<string, StoredConversation>();
  const chatCompletions = new Map<string, StoredChatCompletion>();
  const containers = new Map<string, StoredContainer>();
  const jobs = new Map<string, StoredJob>();
  const evals = new Map<string, StoredEval>();
  const videos = new Map<string, { object: any }>();
  const mine = new WeakSet<RecordedRequest>();

  const routes: Route[] = [];
  const route = (method: string, template: string, handler: Handler, multipart = false) => {
    const names: string[] = [];
    const pattern = template.replace(/\{(\w+)\}/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    routes.push({ method, template, regex: new RegExp(`^${pattern}$`), names, handler, multipart });
  };

  function match(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
    const p = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
    for (const r of routes) {
      if (r.method !== method) continue;
      const m = r.regex.exec(p);
      if (!m) continue;
      const params: Record<string, string> = {};
      r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
      return { route: r, params };
    }
    return undefined;
  }

  // ---- files ------------------------------------------------------------------------------------

  function addFile(filename: string, purpose: string, content: Content, sha: string | null, bytes: number, expiresAt: number | null = null): any {
    const created = nowSec();
    const object = {
      object: 'file',
      id: `file-${alnum(22)}`,
      purpose,
      filename,
      bytes,
      created_at: created,
      expires_at: expiresAt,
      status: 'processed',
      status_details: null,
    };
    files.set(object.id, { object, content, sha256: sha });
    return object;
  }

  function addTextFile(filename: string, purpose: string, text: string): any {
    const data = Buffer.from(text);
    return addFile(filename, purpose, { kind: 'bytes', data }, sha256(data), data.length);
  }

  function getFile(id: string): StoredFile {
    const f = files.get(id);
    if (!f) throw notFound('File object', id, 'file_id');
    return f;
  }

  function textOf(content: Content): string | null {
    return content.kind === 'bytes' ? content.data.toString('utf8') : null;
  }

  function contentChunks(id: string, content: Content): { chunks: Iterable<Buffer>; length: number } {
    if (content.kind === 'bytes') return { chunks: bufferChunks(content.data), length: content.data.length };
    if (content.kind === 'pattern') return { chunks: patternChunks(id, content.size), length: content.size };
    throw new ApiError(400, `The content of ${id} is not available for download.`, 'file_id');
  }

  function requireForm(call: Call): Form {
    if (!call.form) {
      const type = call.req.headers['content-type'] ?? '';
      throw new ApiError(400, `Invalid Content-Type header (${type}), expected multipart/form-data.`, null, 'invalid_content_type');
    }
    return call.form;
  }

  route(
    'POST',
    '/v1/files',
    async (call) => {
      const form = requireForm(call);
      const purpose = form.field('purpose');
      if (!purpose) throw missing('purpose');
      if (!FILE_PURPOSES.includes(purpose)) throw invalid('purpose', `Invalid value for 'purpose': '${purpose}'. Expected one of ${FILE_PURPOSES.join(', ')}.`);
      const upload = form.file('file');
      if (!upload) throw missing('file');
      if (purpose === 'batch' && upload.content) validateBatchInput(upload.content.toString('utf8'));
      const seconds = optionalInt(form.field('expires_after[seconds]'), 'expires_after[seconds]', 3600, 2_592_000);
      const content: Content = upload.content ? { kind: 'bytes', data: upload.content } : { kind: 'not-kept' };
      const object = addFile(upload.filename, purpose, content, upload.sha256, upload.bytes, seconds ? nowSec() + seconds : null);
      await sendJson(call, 200, object);
    },
    true,
  );
  route('GET', '/v1/files', async (call) => {
    const purpose = call.query.get('purpose');
    const items = [...files.values()].map((f) => f.object).filter((o) => !purpose || o.purpose === purpose);
    await sendJson(call, 200, page(items, call.query, { order: 'desc', limit: 10_000, maxLimit: 10_000 }));
  });
  route('GET', '/v1/files/{file_id}', async (call) => sendJson(call, 200, getFile(call.params.file_id).object));
  route('DELETE', '/v1/files/{file_id}', async (call) => {
    const id = getFile(call.params.file_id).object.id;
    files.delete(id);
    await sendJson(call, 200, { object: 'file', deleted: true, id });
  });
  route('GET', '/v1/files/{file_id}/content', async (call) => {
    const f = getFile(call.params.file_id);
    if (f.object.purpose === 'assistants') throw new ApiError(400, 'Not allowed to download files of purpose: assistants', 'file_id');
    const { chunks, length } = contentChunks(f.object.id, f.content);
    await sendBinary(call, 'application/octet-stream', chunks, length);
  });

  // ---- uploads ----------------------------------------------------------------------------------

  function getUpload(id: string): StoredUpload {
    const u = uploads.get(id);
    if (!u) throw notFound('Upload', id, 'upload_id');
    return u;
  }

  function pendingUpload(id: string): StoredUpload {
    const u = getUpload(id);
    if (u.object.status !== 'pending') throw new ApiError(400, `Upload ${id} is already ${u.object.status}.`, 'upload_id');
    return u;
  }

  route('POST', '/v1/uploads', async (call) => {
    const b = call.body;
    const bytes = optionalInt(b.bytes, 'bytes', 0, 8 * 1024 ** 3);
    if (bytes === undefined) throw missing('bytes');
    const filename = requireString(b, 'filename');
    requireString(b, 'mime_type');
    const purpose = requireString(b, 'purpose');
    if (!FILE_PURPOSES.includes(purpose)) throw invalid('purpose', `Invalid value for 'purpose': '${purpose}'.`);
    const created = nowSec();
    const object = { id: `upload_${alnum(24)}`, object: 'upload', bytes, created_at: created, expires_at: created + 3600, filename, purpose, status: 'pending', file: null };
    uploads.set(object.id, { object, parts: new Map() });
    await sendJson(call, 200, object);
  });
  route(
    'POST',
    '/v1/uploads/{upload_id}/parts',
    async (call) => {
      const u = pendingUpload(call.params.upload_id);
      const data = requireForm(call).file('data');
      if (!data) throw missing('data');
      if (data.bytes > 64 * 1024 * 1024) throw invalid('data', 'Each part may be at most 64 MB.');
      const object = { id: `part_${alnum(24)}`, object: 'upload.part', created_at: nowSec(), upload_id: u.object.id };
      u.parts.set(object.id, { object, bytes: data.bytes, content: data.content });
      await sendJson(call, 200, object);
    },
    true,
  );
  route('POST', '/v1/uploads/{upload_id}/complete', async (call) => {
    const u = pendingUpload(call.params.upload_id);
    const ids = call.body.part_ids;
    if (!Array.isArray(ids) || ids.length === 0) throw missing('part_ids');
    const parts = ids.map((id: unknown) => {
      const p = typeof id === 'string' ? u.parts.get(id) : undefined;
      if (!p) throw invalid('part_ids', `Invalid part id: ${String(id)}.`);
      return p;
    });
    const total = parts.reduce((n, p) => n + p.bytes, 0);
    if (total !== u.object.bytes) {
      throw invalid('part_ids', `The parts add up to ${total} bytes, but the upload was created for ${u.object.bytes} bytes.`);
    }
    const kept = parts.every((p) => p.content !== null);
    const data = kept ? Buffer.concat(parts.map((p) => p.content!)) : null;
    if (data && typeof call.body.md5 === 'string' && createHash('md5').update(data).digest('hex') !== call.body.md5) {
      throw invalid('md5', 'The md5 checksum does not match the uploaded bytes.');
    }
    const file = addFile(u.object.filename, u.object.purpose, data ? { kind: 'bytes', data } : { kind: 'not-kept' }, data ? sha256(data) : null, total);
    u.object = { ...u.object, status: 'completed', file };
    await sendJson(call, 200, u.object);
  });
  route('POST', '/v1/uploads/{upload_id}/cancel', async (call) => {
    const u = pendingUpload(call.params.upload_id);
    u.object = { ...u.object, status: 'cancelled' };
    await sendJson(call, 200, u.object);
  });

  // ---- batches ----------------------------------------------------------------------------------

  function validateBatchInput(text: string): void {
    text
      .split('\n')
      .filter((l) => l.trim())
      .forEach((line, i) => {
        let row: any;
        try {
          row = JSON.parse(line);
        } catch {
          throw new ApiError(400, `Invalid file format for Batch API. Line ${i + 1} is not valid JSON.`, 'file');
        }
        if (!isObject(row) || typeof row.custom_id !== 'string' || row.method !== 'POST' || typeof row.url !== 'string' || !isObject(row.body)) {
          throw new ApiError(400, `Invalid file format for Batch API. Line ${i + 1} needs custom_id, method "POST", url and body.`, 'file');
        }
      });
  }

  function batchLines(fileId: string): any[] {
    const text = textOf(getFile(fileId).content);
    return text === null ? [] : text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  /** the answer and usage of one batch request, as the matching endpoint would give them */
  function batchAnswer(endpoint: string, body: any): { body: any; input: number; output: number } {
    if (endpoint === '/v1/embeddings') {
      const inputs = Array.isArray(body.input) ? body.input.map(String) : [String(body.input ?? '')];
      const input = inputs.reduce((n: number, s: string) => n + tokensOf(s), 0);
      const data = inputs.map((s: string, index: number) => ({ object: 'embedding', index, embedding: fakeEmbedding(body.model, s, body.dimensions) }));
      return { body: { object: 'list', data, model: body.model, usage: { prompt_tokens: input, total_tokens: input } }, input, output: 0 };
    }
    if (endpoint === '/v1/chat/completions') {
      const c = chatCompletionObject(`chatcmpl-${alnum(29)}`, body.model, Array.isArray(body.messages) ? body.messages : [], null);
      const { metadata: _m, ...wire } = c;
      return { body: wire, input: c.usage.prompt_tokens, output: c.usage.completion_tokens };
    }
    const prompt = endpoint === '/v1/responses' ? contentText(body.input) || lastUserText(body.input) : contentText(body.prompt) || contentText(body.input);
    const text = echoOf(prompt);
    const input = tokensOf(prompt);
    const output = wordCount(text);
    const usage = { input_tokens: input, output_tokens: output, total_tokens: input + output };
    return { body: { id: `resp_${hex(24)}`, object: endpoint === '/v1/responses' ? 'response' : 'text_completion', model: body.model, output_text: text, usage }, input, output };
  }

  function finishBatch(b: any): any {
    if (b.status === 'cancelling') return { ...b, status: 'cancelled', cancelled_at: nowSec() };
    if (b.status !== 'validating' && b.status !== 'in_progress') return b;
    const lines = batchLines(b.input_file_id);
    let input = 0;
    let output = 0;
    const out = lines.map((row) => {
      const a = batchAnswer(b.endpoint, row.body ?? {});
      input += a.input;
      output += a.output;
      return JSON.stringify({ id: `batch_req_${hex(16)}`, custom_id: row.custom_id, response: { status_code: 200, request_id: `req_${hex(16)}`, body: a.body }, error: null });
    });
    const file = addTextFile(`batch_${b.id}_output.jsonl`, 'batch_output', out.map((l) => `${l}\n`).join(''));
    const t = nowSec();
    return {
      ...b,
      status: 'completed',
      output_file_id: file.id,
      in_progress_at: b.in_progress_at ?? t,
      finalizing_at: t,
      completed_at: t,
      request_counts: { total: lines.length, completed: lines.length, failed: 0 },
      usage: {
        input_tokens: input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: input + output,
      },
    };
  }

  function getBatch(id: string): any {
    const b = batches.get(id);
    if (!b) throw notFound('batch', id, 'batch_id');
    return b;
  }

  route('POST', '/v1/batches', async (call) => {
    const b = call.body;
    const inputFileId = requireString(b, 'input_file_id');
    const endpoint = requireString(b, 'endpoint');
    const window = requireString(b, 'completion_window');
    if (!BATCH_ENDPOINTS.includes(endpoint)) throw invalid('endpoint', `Invalid value for 'endpoint': '${endpoint}'.`);
    if (window !== '24h') throw invalid('completion_window', "Invalid value for 'completion_window': only '24h' is supported.");
    const input = files.get(inputFileId);
    if (!input) throw new ApiError(400, `Invalid 'input_file_id': '${inputFileId}'. File not found.`, 'input_file_id', 'invalid_file');
    if (input.object.purpose !== 'batch') throw new ApiError(400, `Invalid 'input_file_id': '${inputFileId}' does not have purpose 'batch'.`, 'input_file_id');
    const lines = batchLines(inputFileId);
    const created = nowSec();
    const batch = {
      id: `batch_${hex(16)}`,
      object: 'batch',
      endpoint,
      model: lines.find((l) => typeof l.body?.model === 'string')?.body.model ?? null,
      errors: null,
      input_file_id: inputFileId,
      completion_window: window,
      status: 'validating',
      output_file_id: null,
      error_file_id: null,
      created_at: created,
      in_progress_at: null,
      expires_at: created + 86_400,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: lines.length, completed: 0, failed: 0 },
      metadata: metadataOf(b.metadata),
    };
    batches.set(batch.id, batch);
    await sendJson(call, 200, batch);
  });
  route('GET', '/v1/batches', async (call) => sendJson(call, 200, page([...batches.values()], call.query, { order: 'desc', limit: 20 })));
  route('GET', '/v1/batches/{batch_id}', async (call) => {
    const b = finishBatch(getBatch(call.params.batch_id));
    batches.set(b.id, b);
    await sendJson(call, 200, b);
  });
  route('POST', '/v1/batches/{batch_id}/cancel', async (call) => {
    const b = getBatch(call.params.batch_id);
    if (!['validating', 'in_progress', 'finalizing'].includes(b.status)) {
      throw new ApiError(400, `Cannot cancel a batch with status '${b.status}'.`, 'batch_id');
    }
    const next = { ...b, status: 'cancelling', cancelling_at: nowSec() };
    batches.set(b.id, next);
    await sendJson(call, 200, next);
  });

  // ---- vector stores ------------------------------------------------------------------------------

  const CHUNKING = { type: 'static', static: { max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 } };

  function getStore(id: string): StoredVectorStore {
    const s = vectorStores.get(id);
    if (!s) throw notFound('vector store', id, 'vector_store_id');
    return s;
  }

  function storeView(s: StoredVectorStore): any {
    const list = [...s.files.values()];
    const count = (st: string) => list.filter((f) => f.status === st).length;
    s.object.file_counts = { in_progress: count('in_progress'), completed: count('completed'), failed: count('failed'), cancelled: count('cancelled'), total: list.length };
    s.object.usage_bytes = list.reduce((n, f) => n + f.usage_bytes, 0);
    return s.object;
  }

  function attachFile(s: StoredVectorStore, fileId: string, attributes: unknown, chunking: unknown): any {
    const f = files.get(fileId);
    if (!f) throw notFound('File object', fileId, 'file_id');
    const vf = {
      id: fileId,
      object: 'vector_store.file',
      usage_bytes: f.object.bytes,
      created_at: nowSec(),
      vector_store_id: s.object.id,
      status: 'completed',
      last_error: null,
      chunking_strategy: isObject(chunking) && chunking.type === 'static' ? chunking : CHUNKING,
      attributes: isObject(attributes) ? attributes : {},
    };
    s.files.set(fileId, vf);
    return vf;
  }

  function getStoreFile(s: StoredVectorStore, fileId: string): any {
    const vf = s.files.get(fileId);
    if (!vf) throw notFound('vector store file', fileId, 'file_id');
    return vf;
  }

  function chunksOf(text: string): string[] {
    const out: string[] = [];
    for (const para of text.split(/\n\s*\n/)) {
      for (let i = 0; i < para.length; i += 800) if (para.slice(i, i + 800).trim()) out.push(para.slice(i, i + 800).trim());
    }
    return out;
  }

  route('POST', '/v1/vector_stores', async (call) => {
    const b = call.body;
    const created = nowSec();
    const expires = isObject(b.expires_after) ? { anchor: 'last_active_at', days: optionalInt(b.expires_after.days, 'expires_after.days', 1, 365) ?? 7 } : null;
    const s: StoredVectorStore = {
      object: {
        id: `vs_${hex(16)}`,
        object: 'vector_store',
        created_at: created,
        name: typeof b.name === 'string' ? b.name : '',
        usage_bytes: 0,
        file_counts: { in_progress: 0, completed: 0, failed: 0, cancelled: 0, total: 0 },
        status: 'completed',
        expires_after: expires,
        expires_at: expires ? created + expires.days * 86_400 : null,
        last_active_at: created,
        metadata: metadataOf(b.metadata) ?? {},
      },
      files: new Map(),
      batches: new Map(),
    };
    const ids = Array.isArray(b.file_ids) ? b.file_ids : [];
    for (const id of ids) if (!files.has(id)) throw notFound('File object', String(id), 'file_ids');
    vectorStores.set(s.object.id, s);
    for (const id of ids) attachFile(s, id, null, b.chunking_strategy);
    await sendJson(call, 200, storeView(s));
  });
  route('GET', '/v1/vector_stores', async (call) => sendJson(call, 200, page([...vectorStores.values()].map(storeView), call.query, { order: 'desc', limit: 20 })));
  route('GET', '/v1/vector_stores/{vector_store_id}', async (call) => sendJson(call, 200, storeView(getStore(call.params.vector_store_id))));
  route('POST', '/v1/vector_stores/{vector_store_id}', async (call) => {
    const s = getStore(call.params.vector_store_id);
    if (typeof call.body.name === 'string') s.object.name = call.body.name;
    if (call.body.metadata !== undefined) s.object.metadata = metadataOf(call.body.metadata) ?? {};
    s.object.last_active_at = nowSec();
    await sendJson(call, 200, storeView(s));
  });
  route('DELETE', '/v1/vector_stores/{vector_store_id}', async (call) => {
    const s = getStore(call.params.vector_store_id);
    vectorStores.delete(s.object.id);
    await sendJson(call, 200, { id: s.object.id, object: 'vector_store.deleted', deleted: true });
  });
  route('POST', '/v1/vector_stores/{vector_store_id}/search', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const q = call.body.query;
    const queries: string[] = typeof q === 'string' ? [q] : Array.isArray(q) && q.every((x) => typeof x === 'string') ? q : [];
    if (queries.length === 0) throw missing('query');
    const max = optionalInt(call.body.max_num_results, 'max_num_results', 1, 50) ?? 10;
    const words = queries.join(' ').toLowerCase().split(/\W+/).filter(Boolean);
    const hits: any[] = [];
    for (const vf of s.files.values()) {
      const f = files.get(vf.id);
      const text = f ? textOf(f.content) : null;
      if (!f || text === null) continue;
      for (const chunk of chunksOf(text)) {
        const lower = chunk.toLowerCase();
        const score = words.filter((w) => lower.includes(w)).length / words.length;
        if (score > 0) hits.push({ file_id: vf.id, filename: f.object.filename, score, attributes: vf.attributes, content: [{ type: 'text', text: chunk }] });
      }
    }
    hits.sort((a, b) => b.score - a.score);
    await sendJson(call, 200, { object: 'vector_store.search_results.page', search_query: queries, data: hits.slice(0, max), has_more: false, next_page: null });
  });
  route('POST', '/v1/vector_stores/{vector_store_id}/files', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const vf = attachFile(s, requireString(call.body, 'file_id'), call.body.attributes, call.body.chunking_strategy);
    await sendJson(call, 200, vf);
  });
  route('GET', '/v1/vector_stores/{vector_store_id}/files', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const filter = call.query.get('filter');
    const items = [...s.files.values()].filter((f) => !filter || f.status === filter);
    await sendJson(call, 200, page(items, call.query, { order: 'desc', limit: 20 }));
  });
  route('GET', '/v1/vector_stores/{vector_store_id}/files/{file_id}', async (call) => {
    await sendJson(call, 200, getStoreFile(getStore(call.params.vector_store_id), call.params.file_id));
  });
  route('POST', '/v1/vector_stores/{vector_store_id}/files/{file_id}', async (call) => {
    const vf = getStoreFile(getStore(call.params.vector_store_id), call.params.file_id);
    if (!isObject(call.body.attributes)) throw missing('attributes');
    vf.attributes = call.body.attributes;
    await sendJson(call, 200, vf);
  });
  route('DELETE', '/v1/vector_stores/{vector_store_id}/files/{file_id}', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const vf = getStoreFile(s, call.params.file_id);
    s.files.delete(vf.id);
    await sendJson(call, 200, { id: vf.id, object: 'vector_store.file.deleted', deleted: true });
  });
  route('GET', '/v1/vector_stores/{vector_store_id}/files/{file_id}/content', async (call) => {
    const vf = getStoreFile(getStore(call.params.vector_store_id), call.params.file_id);
    const f = files.get(vf.id);
    const text = f ? textOf(f.content) : null;
    const data = text === null ? [] : chunksOf(text).map((t) => ({ type: 'text', text: t }));
    await sendJson(call, 200, { object: 'vector_store.file_content.page', data, has_more: false, next_page: null });
  });
  route('POST', '/v1/vector_stores/{vector_store_id}/file_batches', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const entries: { file_id: string; attributes?: unknown }[] = Array.isArray(call.body.files)
      ? call.body.files
      : Array.isArray(call.body.file_ids)
        ? call.body.file_ids.map((id: string) => ({ file_id: id, attributes: call.body.attributes }))
        : [];
    if (entries.length === 0) throw missing('file_ids');
    for (const e of entries) if (!files.has(e.file_id)) throw notFound('File object', String(e.file_id), 'file_ids');
    const attached = entries.map((e) => attachFile(s, e.file_id, e.attributes, call.body.chunking_strategy));
    const batch = {
      id: `vsfb_${hex(16)}`,
      object: 'vector_store.files_batch',
      created_at: nowSec(),
      vector_store_id: s.object.id,
      status: 'completed',
      file_counts: { in_progress: 0, completed: attached.length, failed: 0, cancelled: 0, total: attached.length },
    };
    s.batches.set(batch.id, { batch, fileIds: attached.map((f) => f.id) });
    await sendJson(call, 200, batch);
  });
  const getFileBatch = (call: Call) => {
    const entry = getStore(call.params.vector_store_id).batches.get(call.params.batch_id);
    if (!entry) throw notFound('vector store file batch', call.params.batch_id, 'batch_id');
    return entry;
  };
  route('GET', '/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}', async (call) => sendJson(call, 200, getFileBatch(call).batch));
  route('POST', '/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel', async (call) => {
    const entry = getFileBatch(call);
    if (entry.batch.status !== 'in_progress') throw new ApiError(400, `Cannot cancel a file batch with status '${entry.batch.status}'.`, 'batch_id');
    entry.batch = { ...entry.batch, status: 'cancelled' };
    await sendJson(call, 200, entry.batch);
  });
  route('GET', '/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files', async (call) => {
    const s = getStore(call.params.vector_store_id);
    const entry = getFileBatch(call);
    const items = entry.fileIds.map((id: string) => s.files.get(id)).filter(Boolean);
    await sendJson(call, 200, page(items, call.query, { order: 'desc', limit: 20 }));
  });

  // ---- conversations ------------------------------------------------------------------------------

  function conversationItem(input: unknown, index: number): any {
    if (!isObject(input)) throw invalid(`items[${index}]`, `Invalid 'items[${index}]': expected an object.`);
    const type = input.type ?? 'message';
    if (type === 'message') {
      if (!['user', 'assistant', 'system', 'developer'].includes(input.role)) {
        throw invalid(`items[${index}].role`, `Invalid value for 'items[${index}].role': '${String(input.role)}'.`);
      }
      const partType = input.role === 'assistant' ? 'output_text' : 'input_text';
      const content = typeof input.content === 'string' ? [{ type: partType, text: input.content }] : Array.isArray(input.content) ? input.content : null;
      if (!content) throw missing(`items[${index}].content`);
      return { id: input.id ?? `msg_${hex(24)}`, type: 'message', status: 'completed', role: input.role, content };
    }
    return { ...input, id: input.id ?? `${type === 'function_call' ? 'fc' : 'item'}_${hex(24)}`, status: input.status ?? 'completed' };
  }

  function getConversation(id: string): StoredConversation {
    const c = conversations.get(id);
    if (!c) throw notFound('conversation', id, 'conversation_id');
    return c;
  }

  function itemsOf(body: Record<string, any>, required: boolean): any[] {
    if (body.items === undefined && !required) return [];
    if (!Array.isArray(body.items) || (required && body.items.length === 0)) throw missing('items');
    if (body.items.length > 20) throw invalid('items', "Invalid 'items': at most 20 items at a time.");
    return body.items.map(conversationItem);
  }

  route('POST', '/v1/conversations', async (call) => {
    const items = itemsOf(call.body, false);
    const object = { id: `conv_${hex(24)}`, object: 'conversation', created_at: nowSec(), metadata: metadataOf(call.body.metadata) ?? {} };
    conversations.set(object.id, { object, items });
    await sendJson(call, 200, object);
  });
  route('GET', '/v1/conversations/{conversation_id}', async (call) => sendJson(call, 200, getConversation(call.params.conversation_id).object));
  route('POST', '/v1/conversations/{conversation_id}', async (call) => {
    const c = getConversation(call.params.conversation_id);
    if (call.body.metadata === undefined) throw missing('metadata');
    c.object = { ...c.object, metadata: metadataOf(call.body.metadata) ?? {} };
    await sendJson(call, 200, c.object);
  });
  route('DELETE', '/v1/conversations/{conversation_id}', async (call) => {
    const c = getConversation(call.params.conversation_id);
    conversations.delete(c.object.id);
    await sendJson(call, 200, { id: c.object.id, object: 'conversation.deleted', deleted: true });
  });
  route('POST', '/v1/conversations/{conversation_id}/items', async (call) => {
    const c = getConversation(call.params.conversation_id);
    const added = itemsOf(call.body, true);
    c.items.push(...added);
    await sendJson(call, 200, { object: 'list', data: added, first_id: added[0].id, last_id: added.at(-1).id, has_more: false });
  });
  route('GET', '/v1/conversations/{conversation_id}/items', async (call) => {
    await sendJson(call, 200, page(getConversation(call.params.conversation_id).items, call.query, { order: 'desc', limit: 20 }));
  });
  const getItem = (call: Call) => {
    const c = getConversation(call.params.conversation_id);
    const item = c.items.find((i) => i.id === call.params.item_id);
    if (!item) throw notFound('item', call.params.item_id, 'item_id');
    return { c, item };
  };
  route('GET', '/v1/conversations/{conversation_id}/items/{item_id}', async (call) => sendJson(call, 200, getItem(call).item));
  route('DELETE', '/v1/conversations/{conversation_id}/items/{item_id}', async (call) => {
    const { c, item } = getItem(call);
    c.items = c.items.filter((i) => i !== item);
    await sendJson(call, 200, c.object);
  });

  // ---- stored chat completions ------------------------------------------------------------------

  function getCompletion(id: string): StoredChatCompletion {
    const c = chatCompletions.get(id);
    if (!c) throw notFound('chat completion', id, 'completion_id');
    return c;
  }

  route('GET', '/v1/chat/completions', async (call) => {
    const model = call.query.get('model');
    const meta = metadataFilter(call.query);
    const items = [...chatCompletions.values()]
      .map((c) => c.object)
      .filter((o) => (!model || o.model === model) && meta.every(([k, v]) => o.metadata?.[k] === v));
    await sendJson(call, 200, page(items, call.query, { order: 'asc', limit: 20 }));
  });
  route('GET', '/v1/chat/completions/{completion_id}', async (call) => sendJson(call, 200, getCompletion(call.params.completion_id).object));
  route('POST', '/v1/chat/completions/{completion_id}', async (call) => {
    const c = getCompletion(call.params.completion_id);
    if (call.body.metadata === undefined) throw missing('metadata');
    c.object = { ...c.object, metadata: metadataOf(call.body.metadata) ?? {} };
    await sendJson(call, 200, c.object);
  });
  route('DELETE', '/v1/chat/completions/{completion_id}', async (call) => {
    const c = getCompletion(call.params.completion_id);
    chatCompletions.delete(c.object.id);
    await sendJson(call, 200, { object: 'chat.completion.deleted', id: c.object.id, deleted: true });
  });
  route('GET', '/v1/chat/completions/{completion_id}/messages', async (call) => {
    await sendJson(call, 200, page(getCompletion(call.params.completion_id).messages, call.query, { order: 'asc', limit: 20 }));
  });

  // ---- embeddings, completions, moderations ---------------------------------------------------------

  function textInputs(input: unknown, param: string): string[] {
    if (typeof input === 'string') return [input];
    if (Array.isArray(input) && input.length > 0) {
      if (input.every((x) => typeof x === 'string')) return input;
      if (input.every((x) => typeof x === 'number')) return [input.join(' ')];
      if (input.every((x) => Array.isArray(x) && x.every((t) => typeof t === 'number'))) return input.map((x) => x.join(' '));
    }
    throw invalid(param, `Invalid '${param}': expected a string, an array of strings, or arrays of tokens.`);
  }

  route('POST', '/v1/embeddings', async (call) => {
    const model = requireString(call.body, 'model');
    if (call.body.input === undefined) throw missing('input');
    const inputs = textInputs(call.body.input, 'input');
    if (inputs.some((s) => s.length === 0)) throw invalid('input', "'$.input' is invalid. Please check the API reference.");
    const format = call.body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') throw invalid('encoding_format', `Invalid value for 'encoding_format': '${String(format)}'.`);
    const native = EMBEDDING_DIMENSIONS[model] ?? 1536;
    const dims = optionalInt(call.body.dimensions, 'dimensions', 1, native);
    const tokens = inputs.reduce((n, s) => n + tokensOf(s), 0);
    const data = inputs.map((s, index) => {
      const v = fakeEmbedding(model, s, dims);
      return { object: 'embedding', index, embedding: format === 'base64' ? embeddingBase64(v) : v };
    });
    await sendJson(call, 200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  });

  route('POST', '/v1/completions', async (call) => {
    const b = call.body;
    const model = requireString(b, 'model');
    const prompts = b.prompt === undefined ? ['<|endoftext|>'] : textInputs(b.prompt, 'prompt');
    const n = optionalInt(b.n, 'n', 1, 128) ?? 1;
    const maxTokens = optionalInt(b.max_tokens, 'max_tokens', 0, 1_000_000) ?? 16;
    const id = `cmpl-${alnum(29)}`;
    const created = nowSec();
    const choices: { text: string; finish: string }[] = [];
    for (const prompt of prompts) {
      for (let i = 0; i < n; i++) {
        const words = ` ${echoOf(prompt)}${i > 0 ? ` (${i + 1})` : ''}`.split(/(?=\s)/);
        const truncated = words.length > maxTokens;
        const text = words.slice(0, maxTokens).join('');
        choices.push({ text: (b.echo === true ? prompt : '') + text, finish: truncated ? 'length' : 'stop' });
      }
    }
    const promptTokens = prompts.reduce((s, p) => s + tokensOf(p), 0);
    const completionTokens = choices.reduce((s, c) => s + (c.text.trim() ? wordCount(c.text) : 0), 0);
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    const base = { id, object: 'text_completion', created, model, system_fingerprint: 'fp_fake0000001' };
    if (b.stream !== true) {
      const out = choices.map((c, index) => ({ text: c.text, index, logprobs: null, finish_reason: c.finish }));
      await sendJson(call, 200, { ...base, choices: out, usage });
      return;
    }
    const withUsage = b.stream_options?.include_usage === true;
    const chunk = (choice: any[], u: unknown = null) => ({ ...base, choices: choice, ...(withUsage ? { usage: u } : {}) });
    const events: { data: unknown }[] = [];
    choices.forEach((c, index) => {
      const pieces = c.text.split(/(?=\s)/);
      const per = Math.max(1, Math.ceil(pieces.length / Math.max(1, call.deltaCount)));
      for (let i = 0; i < pieces.length; i += per) {
        events.push({ data: chunk([{ text: pieces.slice(i, i + per).join(''), index, logprobs: null, finish_reason: null }]) });
      }
      events.push({ data: chunk([{ text: '', index, logprobs: null, finish_reason: c.finish }]) });
    });
    if (withUsage) events.push({ data: chunk([], usage) });
    await sendSse(call, events, true);
  });

  const MODERATION_CATEGORIES: [string, RegExp | null][] = [
    ['harassment', /\b(idiot|stupid|loser)\b/i],
    ['harassment/threatening', /\b(i will hurt you|watch your back)\b/i],
    ['hate', /\b(hate)\b/i],
    ['hate/threatening', null],
    ['illicit', /\b(steal|shoplift)\b/i],
    ['illicit/violent', /\b(bomb)\b/i],
    ['self-harm', /\b(hurt myself)\b/i],
    ['self-harm/intent', /\b(want to hurt myself)\b/i],
    ['self-harm/instructions', null],
    ['sexual', null],
    ['sexual/minors', null],
    ['violence', /\b(kill|murder|attack)\b/i],
    ['violence/graphic', /\b(gore|blood everywhere)\b/i],
  ];
  const IMAGE_CATEGORIES = new Set(['self-harm', 'self-harm/intent', 'self-harm/instructions', 'sexual', 'violence', 'violence/graphic']);

  // ---- responses: the routes beside create, retrieve and cancel ---------------------------------------

  /** responses deleted through DELETE /v1/responses/{id}: later reads of them are 404 */
  const deletedResponses = new Set<string>();
  const knownResponse = (id: string) => {
    if (!/^resp_/.test(id) || deletedResponses.has(id)) throw notFound('response', id);
  };
  route('GET', '/v1/responses/{response_id}/input_items', async (call) => {
    knownResponse(call.params.response_id);
    const item = { id: `msg_${hex(24)}`, type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'Say hello' }] };
    await sendJson(call, 200, { object: 'list', data: [item], first_id: item.id, last_id: item.id, has_more: false });
  });
  route('DELETE', '/v1/responses/{response_id}', async (call) => {
    knownResponse(call.params.response_id);
    deletedResponses.add(call.params.response_id);
    await sendJson(call, 200, { id: call.params.response_id, object: 'response', deleted: true });
  });
  route('POST', '/v1/responses/input_tokens', async (call) => {
    const text = contentText(call.body.input) || '';
    await sendJson(call, 200, { object: 'response.input_tokens', input_tokens: Math.max(1, Math.ceil(text.length / 4)) });
  });
  route('POST', '/v1/responses/compact', async (call) => {
    const text = contentText(call.body.input) || '';
    const input = Math.max(1, Math.ceil(text.length / 4));
    await sendJson(call, 200, {
      id: `resp_${hex(24)}`,
      object: 'response.compaction',
      created_at: Math.floor(Date.now() / 1000),
      output: [{ id: `cmp_${hex(24)}`, type: 'compaction', encrypted_content: hex(32) }],
      usage: { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: 12, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + 12 },
    });
  });

  route('POST', '/v1/moderations', async (call) => {
    const input = call.body.input;
    if (input === undefined) throw missing('input');
    const model = typeof call.body.model === 'string' ? call.body.model : 'omni-moderation-latest';
    // a multimodal array (text and image parts) is one input; strings are one input each
    const multimodal = Array.isArray(input) && input.some((x) => isObject(x));
    const entries: { text: string; image: boolean }[] = multimodal
      ? [{ text: contentText(input), image: input.some((x: any) => x?.type === 'image_url') }]
      : textInputs(input, 'input').map((text) => ({ text, image: false }));
    const results = entries.map(({ text, image }) => {
      const categories: Record<string, boolean> = {};
      const scores: Record<string, number> = {};
      const applied: Record<string, string[]> = {};
      for (const [name, re] of MODERATION_CATEGORIES) {
        categories[name] = !!re && re.test(text);
        scores[name] = categories[name] ? 0.91 : 0.0001;
        applied[name] = image && IMAGE_CATEGORIES.has(name) ? ['text', 'image'] : ['text'];
      }
      return { flagged: Object.values(categories).some(Boolean), categories, category_scores: scores, category_applied_input_types: applied };
    });
    await sendJson(call, 200, { id: `modr-${hex(16)}`, model, results });
  });

  // ---- images -------------------------------------------------------------------------------------

  const IMAGE_TOKENS: Record<string, Record<string, number>> = {
    low: { '1024x1024': 272, '1024x1536': 408, '1536x1024': 400 },
    medium: { '1024x1024': 1056, '1024x1536': 1584, '1536x1024': 1568 },
    high: { '1024x1024': 4160, '1024x1536': 6240, '1536x1024': 6208 },
  };

  /** the answer of generations and edits; `inputImages` counts the images an edit sent */
  function imageAnswer(b: Record<string, any>, defaultModel: string, inputImages: number): any {
    const prompt = requireString(b, 'prompt');
    const model = typeof b.model === 'string' ? b.model : defaultModel;
    const n = optionalInt(b.n, 'n', 1, 10) ?? 1;
    const created = nowSec();
    if (model.startsWith('gpt-image')) {
      const quality = b.quality === undefined || b.quality === 'auto' ? 'medium' : b.quality;
      const size = b.size === undefined || b.size === 'auto' ? '1024x1024' : b.size;
      const perImage = IMAGE_TOKENS[quality]?.[size];
      if (perImage === undefined) throw invalid('size', `Invalid size '${size}' or quality '${quality}' for ${model}.`);
      const textTokens = tokensOf(prompt);
      const imageTokens = inputImages * 323;
      const output = perImage * n;
      return {
        created,
        background: b.background === 'transparent' ? 'transparent' : 'opaque',
        data: Array.from({ length: n }, (_, i) => ({ b64_json: pngImage(`${prompt}\n${i}`).toString('base64') })),
        output_format: b.output_format ?? 'png',
        quality,
        size,
        usage: {
          input_tokens: textTokens + imageTokens,
          input_tokens_details: { image_tokens: imageTokens, text_tokens: textTokens },
          output_tokens: output,
          total_tokens: textTokens + imageTokens + output,
        },
      };
    }
    const format = b.response_format ?? 'url';
    if (format !== 'url' && format !== 'b64_json') throw invalid('response_format', `Invalid value for 'response_format': '${String(format)}'.`);
    return {
      created,
      data: Array.from({ length: n }, (_, i) => ({
        ...(format === 'b64_json'
          ? { b64_json: pngImage(`${prompt}\n${i}`).toString('base64') }
          : { url: `https://oaidalleapiprodscus.blob.core.windows.net/private/org-fake/img-${alnum(24)}.png` }),
        ...(model === 'dall-e-3' ? { revised_prompt: `A picture of: ${prompt}` } : {}),
      })),
    };
  }

  route('POST', '/v1/images/generations', async (call) => sendJson(call, 200, imageAnswer(call.body, 'dall-e-2', 0)));
  route(
    'POST',
    '/v1/images/edits',
    async (call) => {
      const form = requireForm(call);
      const images = form.allFiles('image');
      if (images.length === 0) throw missing('image');
      await sendJson(call, 200, imageAnswer(form.object(), 'dall-e-2', images.length));
    },
    true,
  );
  route(
    'POST',
    '/v1/images/variations',
    async (call) => {
      const form = requireForm(call);
      const image = form.file('image');
      if (!image) throw missing('image');
      const b = form.object();
      if (b.model !== undefined && b.model !== 'dall-e-2') throw invalid('model', `Invalid value for 'model': '${b.model}'. Variations need dall-e-2.`);
      await sendJson(call, 200, imageAnswer({ ...b, prompt: `variation of ${image.filename} ${image.sha256}` }, 'dall-e-2', 1));
    },
    true,
  );

  // ---- audio --------------------------------------------------------------------------------------

  route('POST', '/v1/audio/speech', async (call) => {
    const b = call.body;
    const model = requireString(b, 'model');
    const input = requireString(b, 'input');
    if (input.length > 4096) throw invalid('input', "Invalid 'input': string too long. Expected a string with maximum length 4096.");
    if (b.voice === undefined) throw missing('voice');
    const format = b.response_format ?? 'mp3';
    const contentType = SPEECH_FORMATS[format];
    if (!contentType) throw invalid('response_format', `Invalid value for 'response_format': '${String(format)}'.`);
    const audio = speechAudio({ ...b, model, input });
    if (b.stream_format === 'sse') {
      const events: { data: unknown }[] = [...bufferChunks(audio, 4096)].map((c) => ({ data: { type: 'speech.audio.delta', audio: c.toString('base64') } }));
      const inputTokens = tokensOf(input);
      const output = Math.ceil(audio.length / 64);
      events.push({ data: { type: 'speech.audio.done', usage: { input_tokens: inputTokens, output_tokens: output, total_tokens: inputTokens + output } } });
      await sendSse(call, events, false);
      return;
    }
    await sendBinary(call, contentType, bufferChunks(audio, 4096));
  });

  function audioText(kind: 'transcribe' | 'translate', f: ReceivedFile): string {
    return `${kind === 'transcribe' ? 'Transcript' : 'Translation'} of ${f.filename}: ${f.bytes} bytes, sha256 ${f.sha256.slice(0, 16)}.`;
  }

  function timestamp(seconds: number, sep: string): string {
    const ms = Math.round(seconds * 1000);
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${sep}${pad(ms % 1000, 3)}`;
  }

  async function answerAudio(call: Call, kind: 'transcribe' | 'translate'): Promise<void> {
    const form = requireForm(call);
    const file = form.file('file');
    if (!file) throw missing('file');
    const model = form.field('model');
    if (!model) throw missing('model');
    const format = form.field('response_format') ?? 'json';
    const whisper = model === 'whisper-1';
    if (!['json', 'text', 'srt', 'verbose_json', 'vtt'].includes(format)) throw invalid('response_format', `Invalid value for 'response_format': '${format}'.`);
    if (!whisper && format !== 'json' && format !== 'text') {
      throw invalid('response_format', `response_format '${format}' is not compatible with model '${model}'. Use 'json' or 'text'.`);
    }
    const text = audioText(kind, file);
    const duration = Math.max(0.1, Math.round((file.bytes / 16_000) * 100) / 100);
    const outputTokens = tokensOf(text);
    const audioTokens = Math.max(1, Math.ceil(duration * 10));
    const promptTokens = form.field('prompt') ? tokensOf(form.field('prompt')!) : 0;
    const usage =
      kind === 'translate'
        ? undefined
        : whisper
          ? { type: 'duration', seconds: Math.ceil(duration) }
          : {
              type: 'tokens',
              input_tokens: audioTokens + promptTokens,
              input_token_details: { text_tokens: promptTokens, audio_tokens: audioTokens },
              output_tokens: outputTokens,
              total_tokens: audioTokens + promptTokens + outputTokens,
            };
    if (form.field('stream') === 'true' && !whisper && kind === 'transcribe') {
      const words = text.split(/(?=\s)/);
      const events: { data: unknown }[] = words.map((delta) => ({ data: { type: 'transcript.text.delta', delta } }));
      events.push({ data: { type: 'transcript.text.done', text, usage } });
      await sendSse(call, events, false);
      return;
    }
    const segment = { id: 0, seek: 0, start: 0, end: duration, text, tokens: [50364, 50365], temperature: 0, avg_logprob: -0.2, compression_ratio: 1.1, no_speech_prob: 0.01 };
    switch (format) {
      case 'text':
        return sendText(call, 'text/plain; charset=utf-8', `${text}\n`);
      case 'srt':
        return sendText(call, 'text/plain; charset=utf-8', `1\n${timestamp(0, ',')} --> ${timestamp(duration, ',')}\n${text}\n\n`);
      case 'vtt':
        return sendText(call, 'text/vtt; charset=utf-8', `WEBVTT\n\n${timestamp(0, '.')} --> ${timestamp(duration, '.')}\n${text}\n\n`);
      case 'verbose_json': {
        const words = form.list('timestamp_granularities').includes('word')
          ? text.split(/\s+/).map((word, i, all) => ({ word, start: (duration * i) / all.length, end: (duration * (i + 1)) / all.length }))
          : undefined;
        return sendJson(call, 200, {
          task: kind,
          language: 'english',
          duration,
          text,
          ...(words ? { words } : {}),
          segments: [segment],
          ...(usage ? { usage } : {}),
        });
      }
      default:
        return sendJson(call, 200, usage ? { text, usage } : { text });
    }
  }

  route('POST', '/v1/audio/transcriptions', (call) => answerAudio(call, 'transcribe'), true);
  route('POST', '/v1/audio/translations', (call) => answerAudio(call, 'translate'), true);

  // ---- containers ---------------------------------------------------------------------------------

  function getContainer(id: string): StoredContainer {
    const c = containers.get(id);
    if (!c) throw notFound('container', id, 'container_id');
    return c;
  }

  function addContainerFile(c: StoredContainer, filename: string, bytes: number, content: Content, sha: string | null, source: string): any {
    const object = {
      id: `cfile_${hex(16)}`,
      object: 'container.file',
      bytes,
      container_id: c.object.id,
      created_at: nowSec(),
      path: `/mnt/data/${filename}`,
      source,
    };
    c.files.set(object.id, { object, content, sha256: sha });
    return object;
  }

  function getContainerFile(call: Call) {
    const c = getContainer(call.params.container_id);
    const f = c.files.get(call.params.file_id);
    if (!f) throw notFound('container file', call.params.file_id, 'file_id');
    return { c, f };
  }

  route('POST', '/v1/containers', async (call) => {
    const b = call.body;
    const name = requireString(b, 'name');
    const minutes = isObject(b.expires_after) ? optionalInt(b.expires_after.minutes, 'expires_after.minutes', 1, 20) ?? 20 : 20;
    const memory = b.memory_limit ?? '1g';
    if (!['1g', '4g', '16g', '64g'].includes(memory)) throw invalid('memory_limit', `Invalid value for 'memory_limit': '${String(memory)}'.`);
    const created = nowSec();
    const c: StoredContainer = {
      object: {
        id: `cntr_${hex(24)}`,
        object: 'container',
        created_at: created,
        status: 'running',
        expires_after: { anchor: 'last_active_at', minutes },
        last_active_at: created,
        memory_limit: memory,
        name,
      },
      files: new Map(),
    };
    const ids = Array.isArray(b.file_ids) ? b.file_ids : [];
    for (const id of ids) {
      const f = getFile(String(id));
      addContainerFile(c, f.object.filename, f.object.bytes, f.content, f.sha256, 'user');
    }
    containers.set(c.object.id, c);
    await sendJson(call, 200, c.object);
  });
  route('GET', '/v1/containers', async (call) => sendJson(call, 200, page([...containers.values()].map((c) => c.object), call.query, { order: 'desc', limit: 20 })));
  route('GET', '/v1/containers/{container_id}', async (call) => sendJson(call, 200, getContainer(call.params.container_id).object));
  route('DELETE', '/v1/containers/{container_id}', async (call) => {
    const c = getContainer(call.params.container_id);
    containers.delete(c.object.id);
    await sendJson(call, 200, { id: c.object.id, object: 'container.deleted', deleted: true });
  });
  route(
    'POST',
    '/v1/containers/{container_id}/files',
    async (call) => {
      const c = getContainer(call.params.container_id);
      let object: any;
      if (call.form) {
        const file = call.form.file('file');
        if (!file) throw missing('file');
        object = addContainerFile(c, file.filename, file.bytes, file.content ? { kind: 'bytes', data: file.content } : { kind: 'not-kept' }, file.sha256, 'user');
      } else {
        const f = getFile(requireString(call.body, 'file_id'));
        object = addContainerFile(c, f.object.filename, f.object.bytes, f.content, f.sha256, 'user');
      }
      c.object.last_active_at = nowSec();
      await sendJson(call, 200, object);
    },
    true,
  );
  route('GET', '/v1/containers/{container_id}/files', async (call) => {
    const c = getContainer(call.params.container_id);
    await sendJson(call, 200, page([...c.files.values()].map((f) => f.object), call.query, { order: 'desc', limit: 20 }));
  });
  route('GET', '/v1/containers/{container_id}/files/{file_id}', async (call) => sendJson(call, 200, getContainerFile(call).f.object));
  route('DELETE', '/v1/containers/{container_id}/files/{file_id}', async (call) => {
    const { c, f } = getContainerFile(call);
    c.files.delete(f.object.id);
    await sendJson(call, 200, { id: f.object.id, object: 'container.file.deleted', deleted: true });
  });
  route('GET', '/v1/containers/{container_id}/files/{file_id}/content', async (call) => {
    const { f } = getContainerFile(call);
    const { chunks, length } = contentChunks(f.object.id, f.content);
    await sendBinary(call, 'application/octet-stream', chunks, length);
  });

  // ---- fine-tuning --------------------------------------------------------------------------------

  function getJob(id: string): StoredJob {
    const j = jobs.get(id);
    if (!j) throw notFound('fine-tuning job', id, 'fine_tuning_job_id');
    return j;
  }

  function jobEvent(j: StoredJob, message: string, type = 'message', data: unknown = {}): void {
    j.events.push({ object: 'fine_tuning.job.event', id: `ftevent-${alnum(24)}`, created_at: nowSec(), level: 'info', message, data, type });
  }

  /** a job runs to the end between two reads */
  function advanceJob(j: StoredJob): void {
    const o = j.object;
    if (o.status !== 'validating_files' && o.status !== 'queued' && o.status !== 'running') return;
    const steps = 3;
    jobEvent(j, 'Fine-tuning job started');
    for (let step = 1; step <= steps; step++) {
      const loss = Math.round((1.5 / step) * 1000) / 1000;
      jobEvent(j, `Step ${step}/${steps}: training loss=${loss}`, 'metrics', { step, train_loss: loss, total_steps: steps });
      j.checkpoints.push({
        object: 'fine_tuning.job.checkpoint',
        id: `ftckpt_${alnum(24)}`,
        created_at: nowSec(),
        fine_tuned_model_checkpoint: `ft:${o.model}:fake-org:${o.user_provided_suffix ?? ''}:${o.id.slice(6, 14)}:ckpt-step-${step}`,
        fine_tuning_job_id: o.id,
        metrics: { step, train_loss: loss, train_mean_token_accuracy: 0.5 + step / 10, valid_loss: loss, valid_mean_token_accuracy: 0.5, full_valid_loss: loss, full_valid_mean_token_accuracy: 0.5 },
        step_number: step,
      });
    }
    const results = addTextFile('step_metrics.csv', 'fine-tune-results', 'step,train_loss\n1,1.5\n2,0.75\n3,0.5\n');
    const training = files.get(o.training_file);
    const trained = training ? Math.max(1, Math.ceil(training.object.bytes / 4)) * 3 : 1000;
    j.object = {
      ...o,
      status: 'succeeded',
      fine_tuned_model: `ft:${o.model}:fake-org:${o.user_provided_suffix ?? ''}:${o.id.slice(6, 14)}`,
      finished_at: nowSec(),
      trained_tokens: trained,
      result_files: [results.id],
    };
    jobEvent(j, `New fine-tuned model created: ${j.object.fine_tuned_model}`);
    jobEvent(j, 'The job has successfully completed');
  }

  route('POST', '/v1/fine_tuning/jobs', async (call) => {
    const b = call.body;
    const model = requireString(b, 'model');
    const trainingFile = requireString(b, 'training_file');
    for (const [param, id] of [['training_file', trainingFile], ['validation_file', b.validation_file]] as const) {
      if (id !== undefined && id !== null && !files.has(id)) throw new ApiError(400, `File '${id}' not found.`, param, 'file_not_found');
    }
    const hp = {
      batch_size: b.hyperparameters?.batch_size ?? 'auto',
      learning_rate_multiplier: b.hyperparameters?.learning_rate_multiplier ?? 'auto',
      n_epochs: b.hyperparameters?.n_epochs ?? 'auto',
    };
    const method = isObject(b.method) ? b.method : { type: 'supervised', supervised: { hyperparameters: hp } };
    const j: StoredJob = {
      object: {
        object: 'fine_tuning.job',
        id: `ftjob-${alnum(24)}`,
        model,
        created_at: nowSec(),
        finished_at: null,
        fine_tuned_model: null,
        organization_id: 'org-fake',
        result_files: [],
        status: 'validating_files',
        validation_file: b.validation_file ?? null,
        training_file: trainingFile,
        hyperparameters: hp,
        trained_tokens: null,
        error: null,
        user_provided_suffix: typeof b.suffix === 'string' ? b.suffix : null,
        seed: typeof b.seed === 'number' ? b.seed : randomInt(1_000_000_000),
        estimated_finish: null,
        integrations: Array.isArray(b.integrations) ? b.integrations : [],
        metadata: metadataOf(b.metadata),
        method,
      },
      events: [],
      checkpoints: [],
    };
    jobEvent(j, `Validating training file: ${trainingFile}`);
    jobEvent(j, `Created fine-tuning job: ${j.object.id}`);
    jobs.set(j.object.id, j);
    await sendJson(call, 200, j.object);
  });
  route('GET', '/v1/fine_tuning/jobs', async (call) => {
    const meta = metadataFilter(call.query);
    const items = [...jobs.values()].map((j) => j.object).filter((o) => meta.every(([k, v]) => o.metadata?.[k] === v));
    await sendJson(call, 200, page(items, call.query, { order: 'desc', limit: 20, ids: false }));
  });
  route('GET', '/v1/fine_tuning/jobs/{fine_tuning_job_id}', async (call) => {
    const j = getJob(call.params.fine_tuning_job_id);
    advanceJob(j);
    await sendJson(call, 200, j.object);
  });
  const jobTransition = (from: string[], to: string, message: string) => async (call: Call) => {
    const j = getJob(call.params.fine_tuning_job_id);
    if (!from.includes(j.object.status)) throw new ApiError(400, `Job ${j.object.id} has status '${j.object.status}' and cannot be ${to}.`, 'fine_tuning_job_id');
    j.object = { ...j.object, status: to, ...(to === 'cancelled' ? { finished_at: nowSec() } : {}) };
    jobEvent(j, message);
    await sendJson(call, 200, j.object);
  };
  route('POST', '/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel', jobTransition(['validating_files', 'queued', 'running', 'paused'], 'cancelled', 'Fine-tuning job cancelled'));
  route('POST', '/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause', jobTransition(['validating_files', 'queued', 'running'], 'paused', 'Fine-tuning job paused'));
  route('POST', '/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume', jobTransition(['paused'], 'running', 'Fine-tuning job resumed'));
  route('GET', '/v1/fine_tuning/jobs/{fine_tuning_job_id}/events', async (call) => {
    await sendJson(call, 200, page(getJob(call.params.fine_tuning_job_id).events, call.query, { order: 'desc', limit: 20, ids: false }));
  });
  route('GET', '/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints', async (call) => {
    await sendJson(call, 200, page(getJob(call.params.fine_tuning_job_id).checkpoints, call.query, { order: 'desc', limit: 10 }));
  });

  // ---- evals --------------------------------------------------------------------------------------

  function getEval(id: string): StoredEval {
    const e = evals.get(id);
    if (!e) throw notFound('eval', id, 'eval_id');
    return e;
  }

  function getRun(call: Call) {
    const e = getEval(call.params.eval_id);
    const r = e.runs.get(call.params.run_id);
    if (!r) throw notFound('eval run', call.params.run_id, 'run_id');
    return { e, r };
  }

  function dataSourceConfig(c: unknown): any {
    if (!isObject(c)) throw missing('data_source_config');
    if (c.type === 'custom') {
      if (!isObject(c.item_schema)) throw missing('data_source_config.item_schema');
      const properties: Record<string, unknown> = { item: c.item_schema };
      if (c.include_sample_schema === true) properties.sample = { type: 'object', properties: { output_text: { type: 'string' } } };
      return { type: 'custom', schema: { type: 'object', properties, required: Object.keys(properties) } };
    }
    if (c.type === 'logs' || c.type === 'stored_completions') {
      return { type: c.type, metadata: c.metadata ?? null, schema: { type: 'object', properties: { item: { type: 'object' }, sample: { type: 'object' } }, required: ['item', 'sample'] } };
    }
    throw invalid('data_source_config.type', `Invalid value for 'data_source_config.type': '${String(c.type)}'.`);
  }

  /** the rows a run evaluates: inline content or the lines of a file */
  function runItems(ds: any): any[] {
    const source = ds?.source;
    if (source?.type === 'file_content' && Array.isArray(source.content)) return source.content;
    if (source?.type === 'file_id' && typeof source.id === 'string') {
      const text = textOf(getFile(source.id).content);
      return text === null ? [] : text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    }
    return [];
  }

  function finishRun(e: StoredEval, r: { object: any; items: any[]; outputItems: any[] }): void {
    if (r.object.status !== 'queued' && r.object.status !== 'in_progress') return;
    const total = r.items.length;
    const criteria = (e.object.testing_criteria as any[]).map((c, i) => c.name ?? `criterion-${i + 1}`);
    const model = r.object.model;
    const prompt = r.items.reduce((n, it) => n + tokensOf(JSON.stringify(it.item ?? it)), 0);
    const completion = total * 4;
    r.outputItems = r.items.map((it, i) => ({
      object: 'eval.run.output_item',
      id: `outputitem_${hex(16)}`,
      created_at: nowSec(),
      datasource_item: it.item ?? it,
      datasource_item_id: i,
      eval_id: e.object.id,
      run_id: r.object.id,
      status: 'pass',
      results: criteria.map((name) => ({ name, passed: true, score: 1, sample: null, type: 'string_check' })),
      sample: {
        input: [],
        output: [{ role: 'assistant', content: echoOf(JSON.stringify(it.item ?? it)) }],
        finish_reason: 'stop',
        model: model ?? 'gpt-4o-mini',
        usage: { prompt_tokens: 1, completion_tokens: 4, total_tokens: 5, cached_tokens: 0 },
        error: null,
        temperature: 1,
        max_completion_tokens: 2048,
        top_p: 1,
        seed: 42,
      },
    }));
    r.object = {
      ...r.object,
      status: 'completed',
      result_counts: { total, errored: 0, failed: 0, passed: total },
      per_testing_criteria_results: criteria.map((testing_criteria) => ({ testing_criteria, passed: total, failed: 0 })),
      per_model_usage: model ? [{ model_name: model, invocation_count: total, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, cached_tokens: 0 }] : [],
    };
  }

  route('POST', '/v1/evals', async (call) => {
    const b = call.body;
    const config = dataSourceConfig(b.data_source_config);
    if (!Array.isArray(b.testing_criteria) || b.testing_criteria.length === 0) throw missing('testing_criteria');
    const object = {
      object: 'eval',
      id: `eval_${hex(16)}`,
      data_source_config: config,
      testing_criteria: b.testing_criteria,
      name: typeof b.name === 'string' ? b.name : 'Eval',
      created_at: nowSec(),
      metadata: metadataOf(b.metadata),
    };
    evals.set(object.id, { object, runs: new Map() });
    await sendJson(call, 200, object);
  });
  route('GET', '/v1/evals', async (call) => sendJson(call, 200, page([...evals.values()].map((e) => e.object), call.query, { order: 'asc', limit: 20 })));
  route('GET', '/v1/evals/{eval_id}', async (call) => sendJson(call, 200, getEval(call.params.eval_id).object));
  route('POST', '/v1/evals/{eval_id}', async (call) => {
    const e = getEval(call.params.eval_id);
    if (typeof call.body.name === 'string') e.object.name = call.body.name;
    if (call.body.metadata !== undefined) e.object.metadata = metadataOf(call.body.metadata);
    await sendJson(call, 200, e.object);
  });
  route('DELETE', '/v1/evals/{eval_id}', async (call) => {
    const e = getEval(call.params.eval_id);
    evals.delete(e.object.id);
    await sendJson(call, 200, { object: 'eval.deleted', deleted: true, eval_id: e.object.id });
  });
  route('POST', '/v1/evals/{eval_id}/runs', async (call) => {
    const e = getEval(call.params.eval_id);
    const ds = call.body.data_source;
    if (!isObject(ds)) throw missing('data_source');
    const items = runItems(ds);
    const id = `evalrun_${hex(16)}`;
    const object = {
      object: 'eval.run',
      id,
      eval_id: e.object.id,
      report_url: `https://platform.openai.com/evaluation/evals/${e.object.id}?run_id=${id}`,
      status: 'queued',
      model: typeof ds.model === 'string' ? ds.model : null,
      name: typeof call.body.name === 'string' ? call.body.name : `Run ${e.runs.size + 1}`,
      created_at: nowSec(),
      result_counts: { total: 0, errored: 0, failed: 0, passed: 0 },
      per_model_usage: [],
      per_testing_criteria_results: [],
      data_source: ds,
      metadata: metadataOf(call.body.metadata),
      error: null,
    };
    e.runs.set(id, { object, items, outputItems: [] });
    await sendJson(call, 200, object);
  });
  route('GET', '/v1/evals/{eval_id}/runs', async (call) => {
    const e = getEval(call.params.eval_id);
    const status = call.query.get('status');
    const items = [...e.runs.values()].map((r) => r.object).filter((o) => !status || o.status === status);
    await sendJson(call, 200, page(items, call.query, { order: 'asc', limit: 20 }));
  });
  route('GET', '/v1/evals/{eval_id}/runs/{run_id}', async (call) => {
    const { e, r } = getRun(call);
    finishRun(e, r);
    await sendJson(call, 200, r.object);
  });
  const cancelRun = async (call: Call) => {
    const { r } = getRun(call);
    if (r.object.status !== 'queued' && r.object.status !== 'in_progress') throw new ApiError(400, `Run ${r.object.id} has status '${r.object.status}' and cannot be canceled.`, 'run_id');
    r.object = { ...r.object, status: 'canceled' };
    await sendJson(call, 200, r.object);
  };
  // the API documents the first, the SDK calls the second
  route('POST', '/v1/evals/{eval_id}/runs/{run_id}', cancelRun);
  route('POST', '/v1/evals/{eval_id}/runs/{run_id}/cancel', cancelRun);
  route('DELETE', '/v1/evals/{eval_id}/runs/{run_id}', async (call) => {
    const { e, r } = getRun(call);
    e.runs.delete(r.object.id);
    await sendJson(call, 200, { object: 'eval.run.deleted', deleted: true, run_id: r.object.id });
  });
  route('GET', '/v1/evals/{eval_id}/runs/{run_id}/output_items', async (call) => {
    const { r } = getRun(call);
    await sendJson(call, 200, page(r.outputItems, call.query, { order: 'asc', limit: 20 }));
  });
  route('GET', '/v1/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}', async (call) => {
    const { r } = getRun(call);
    const item = r.outputItems.find((o) => o.id === call.params.output_item_id);
    if (!item) throw notFound('output item', call.params.output_item_id, 'output_item_id');
    await sendJson(call, 200, item);
  });

  // ---- videos -------------------------------------------------------------------------------------

  const VIDEO_SIZES = ['720x1280', '1280x720', '1024x1792', '1792x1024'];
  const VIDEO_VARIANTS: Record<string, string> = { video: 'video/mp4', thumbnail: 'image/webp', spritesheet: 'image/jpeg' };

  function getVideo(id: string): { object: any } {
    const v = videos.get(id);
    if (!v) throw notFound('video', id, 'video_id');
    return v;
  }

  function newVideo(b: Record<string, any>, remixOf: any | null): any {
    const prompt = requireString(b, 'prompt');
    const seconds = String(b.seconds ?? remixOf?.seconds ?? '4');
    if (!['4', '8', '12'].includes(seconds)) throw invalid('seconds', `Invalid value for 'seconds': '${seconds}'.`);
    const size = String(b.size ?? remixOf?.size ?? '720x1280');
    if (!VIDEO_SIZES.includes(size)) throw invalid('size', `Invalid value for 'size': '${size}'.`);
    const object = {
      id: `video_${hex(24)}`,
      object: 'video',
      created_at: nowSec(),
      status: 'queued',
      model: String(b.model ?? remixOf?.model ?? 'sora-2'),
      progress: 0,
      seconds,
      size,
      prompt,
      remixed_from_video_id: remixOf?.id ?? null,
      completed_at: null,
      expires_at: null,
      error: null,
    };
    videos.set(object.id, { object });
    return object;
  }

  route('POST', '/v1/videos', async (call) => sendJson(call, 200, newVideo(call.form ? call.form.object() : call.body, null)), true);
  route('GET', '/v1/videos', async (call) => sendJson(call, 200, page([...videos.values()].map((v) => v.object), call.query, { order: 'desc', limit: 20 })));
  route('GET', '/v1/videos/{video_id}', async (call) => {
    const v = getVideo(call.params.video_id);
    if (v.object.status === 'queued' || v.object.status === 'in_progress') {
      const t = nowSec();
      v.object = { ...v.object, status: 'completed', progress: 100, completed_at: t, expires_at: t + 86_400 };
    }
    await sendJson(call, 200, v.object);
  });
  route('DELETE', '/v1/videos/{video_id}', async (call) => {
    const v = getVideo(call.params.video_id);
    videos.delete(v.object.id);
    await sendJson(call, 200, { id: v.object.id, object: 'video.deleted', deleted: true });
  });
  route('GET', '/v1/videos/{video_id}/content', async (call) => {
    const v = getVideo(call.params.video_id);
    if (v.object.status !== 'completed') throw new ApiError(400, `Video ${v.object.id} is not ready yet (status '${v.object.status}').`, 'video_id', 'video_not_ready');
    const variant = call.query.get('variant') ?? 'video';
    const type = VIDEO_VARIANTS[variant];
    if (!type) throw invalid('variant', `Invalid value for 'variant': '${variant}'.`);
    const size = variant === 'video' ? Number(v.object.seconds) * 64 * 1024 : 16 * 1024;
    await sendBinary(call, type, patternChunks(`${v.object.id}/${variant}`, size), size);
  });
  route(
    'POST',
    '/v1/videos/{video_id}/remix',
    async (call) => {
      const v = getVideo(call.params.video_id);
      if (v.object.status !== 'completed') throw new ApiError(400, `Video ${v.object.id} is not ready yet (status '${v.object.status}').`, 'video_id', 'video_not_ready');
      await sendJson(call, 200, newVideo(call.form ? call.form.object() : call.body, v.object));
    },
    true,
  );

  // ---- dispatch -------------------------------------------------------------------------------------

  async function applyFault(call: Call, fault: Fault): Promise<boolean> {
    switch (fault.kind) {
      case 'status': {
        const b = fault.body === undefined ? new ApiError(fault.status, fault.status >= 500 ? 'The server had an error while processing your request. Sorry about that!' : `Request failed with status ${fault.status}.`).body() : fault.body;
        const extra: Record<string, string> = fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter };
        if (typeof b === 'string') sendBuffer(call, fault.status, fault.contentType ?? 'text/plain; charset=utf-8', Buffer.from(b), extra);
        else sendBuffer(call, fault.status, 'application/json', Buffer.from(JSON.stringify(b)), extra);
        return true;
      }
      case 'stall':
        return true;
      case 'reset':
        resetSocket(call);
        return true;
      case 'malformed-json':
        sendBuffer(call, 200, 'application/json', Buffer.from('{"object": "list", "data": [<<this is not json>>'));
        return true;
      case 'malformed-sse':
        sendBuffer(call, 200, 'text/event-stream; charset=utf-8', Buffer.from('this line is not server-sent events\ndata: <<<not json>>>\n\n'));
        return true;
      case 'sse':
        call.res.writeHead(200, { ...commonHeaders(call), 'content-type': 'text/event-stream; charset=utf-8' });
        for (const c of fault.chunks) if (!call.closed && !call.res.write(c)) await drained(call);
        if (!call.closed) call.res.end();
        return true;
      case 'redirect':
        sendBuffer(call, 302, 'application/json', Buffer.from(JSON.stringify(new ApiError(302, 'Found').body())), { location: fault.location ?? '/redirected' });
        return true;
      case 'delay':
        await sleep(call, fault.ms);
        return call.closed;
      case 'slow-stream':
        call.firstByteMs = fault.firstByteMs;
        call.eventIntervalMs = fault.eventIntervalMs;
        return false;
      case 'set-cookie':
        call.setCookie = true;
        return false;
      case 'reset-mid-stream':
        call.resetAfter = Math.max(0, Math.floor(fault.afterEvents));
        return false;
      default:
        return false;
    }
  }

  function authFailure(req: http.IncomingMessage): ApiError | null {
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer\s+(\S.*)$/i.exec(auth.trim()) : null;
    if (!m) {
      return new ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", null, 'invalid_api_key', 'invalid_request_error');
    }
    const key = m[1].trim();
    if (key === 'sk-invalid') {
      return new ApiError(401, `Incorrect API key provided: ${key.slice(0, 6)}****.`, null, 'invalid_api_key', 'invalid_request_error');
    }
    return null;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, receivedAt: number): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const rawUrl = req.url ?? '/';
    const [pathname, search = ''] = rawUrl.split(/\?(.*)/s);
    const found = match(method, pathname);
    if (!found) throw new Error(`not a route of the fake OpenAI API: ${method} ${pathname}`);
    const requestId = `req_${hex(16)}`;
    const record: ApiRecordedRequest = { method, path: rawUrl, headers: { ...req.headers }, body: undefined, rawBody: '', receivedAt, requestId, requestBytes: 0 };
    const call: Call = {
      req,
      res,
      method,
      params: found.params,
      query: new URLSearchParams(search),
      body: {},
      form: null,
      record,
      requestId,
      receivedAt,
      closed: false,
      setCookie: false,
      firstByteMs: deps.options.firstByteMs,
      eventIntervalMs: deps.options.eventIntervalMs,
      deltaCount: deps.options.deltaCount,
    };
    res.once('close', () => (call.closed = true));

    let bodyError: ApiError | null = null;
    const contentType = String(req.headers['content-type'] ?? '');
    const boundary = /^multipart\/form-data\s*;.*\bboundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
    try {
      if (boundary && found.route.multipart) {
        const { form, bytes } = await readMultipart(req, boundary[1] ?? boundary[2]);
        call.form = form;
        record.requestBytes = bytes;
        record.multipart = form.summary();
      } else {
        const raw = await readRaw(req);
        record.requestBytes = raw.length;
        record.rawBody = raw.toString('utf8');
        if (raw.length > 0) {
          if (boundary) throw new ApiError(400, `Invalid Content-Type header (${contentType}), expected application/json.`, null, 'invalid_content_type');
          try {
            record.body = JSON.parse(record.rawBody);
          } catch {
            throw new ApiError(400, 'We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.');
          }
          if (!isObject(record.body)) throw new ApiError(400, 'The body of your request must be a JSON object.');
          call.body = record.body;
        }
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      bodyError = err;
    }

    deps.requests.push(record);
    mine.add(record);
    const max = deps.options.maxRecorded;
    if (typeof max === 'number' && max >= 0) while (deps.requests.length > max) deps.requests.shift();

    const fault = deps.nextFault(/^Bearer\s+(\S+)/i.exec(String(req.headers.authorization ?? ''))?.[1]);
    if (fault && (await applyFault(call, fault))) return;
    const failure = authFailure(req) ?? bodyError;
    if (failure) {
      sendError(call, failure);
      return;
    }
    try {
      await found.route.handler(call);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      sendError(call, err);
    }
  }

  return {
    handles: (method, pathname) => match(method.toUpperCase(), pathname) !== undefined,
    handle,
    seedFile(opts) {
      const filename = opts.filename ?? 'seeded.bin';
      const purpose = opts.purpose ?? 'batch_output';
      if (opts.content !== undefined) {
        const data = Buffer.from(opts.content);
        return addFile(filename, purpose, { kind: 'bytes', data }, sha256(data), data.length);
      }
      const size = opts.bytes ?? 0;
      return addFile(filename, purpose, { kind: 'pattern', size }, null, size);
    },
    seedChatCompletion(opts) {
      const id = `chatcmpl-${alnum(29)}`;
      const object = chatCompletionObject(id, opts.model ?? 'gpt-4o-mini', opts.messages, opts.metadata ?? null);
      const messages = [...opts.messages, object.choices[0].message].map((m, i) => ({
        id: `${id}-${i}`,
        role: m.role,
        content: m.content,
        name: null,
        content_parts: null,
        ...(m.role === 'assistant' ? { refusal: null, annotations: [], audio: null, function_call: null, tool_calls: null } : {}),
      }));
      chatCompletions.set(id, { object, messages });
      return object;
    },
    file(id) {
      const f = files.get(id);
      if (!f) return undefined;
      if (f.sha256 === null && f.content.kind === 'pattern') {
        const hash = createHash('sha256');
        for (const c of patternChunks(id, f.content.size)) hash.update(c);
        f.sha256 = hash.digest('hex');
      }
      return { object: f.object, sha256: f.sha256 };
    },
    recorded(method, path) {
      return deps.requests.filter((r): r is ApiRecordedRequest => {
        if (!mine.has(r) || (method && r.method !== method.toUpperCase())) return false;
        const p = r.path.split('?')[0];
        return path === undefined || (typeof path === 'string' ? p === path : path.test(p));
      });
    },
  };
}
