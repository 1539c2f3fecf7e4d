import Busboy from 'busboy';
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable, Transform, TransformCallback } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { AppException } from '../common/app-exception';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import { FORWARDED_JSON_BOUNDS, refuseOversizedJson } from '../common/json-limits';
import { addsSafetyIdentifier, withLeadingMembers } from '../proxy/proxy-body';

/** A relayed call's body: none, JSON read whole (parsed for its references and stored), or streamed through. */
export type RelayBody =
  | { kind: 'none' }
  | { kind: 'json'; raw: Buffer; text: string; parsed: unknown }
  | { kind: 'stream'; contentType: string; length: number | null; stream: Readable; counter: ByteCounter; form: FormFields | null };

const JSON_TYPE = /^application\/(?:[a-z0-9.!#$%&'*^_`|~-]+\+)?json\b/i;

/** Counts the bytes streaming through and stops the stream past `limit` (413 body_too_large). */
export class ByteCounter extends Transform {
  bytes = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return done(new BodyTooLarge());
    done(null, chunk);
  }
}

/**
 * The plain fields of a multipart upload (model, language, purpose, …) and its files' names, types and sizes,
 * read beside the stream going upstream (busboy), never holding a file: what the record keeps of an upload.
 */
export class FormFields {
  readonly fields: Record<string, string> = {};
  readonly files: { field: string; filename: string | null; content_type: string | null; bytes: number }[] = [];
  private readonly done: Promise<void>;

  constructor(contentType: string, source: Readable) {
    this.done = new Promise<void>((resolve) => {
      let parser: ReturnType<typeof Busboy>;
      try {
        parser = Busboy({ headers: { 'content-type': contentType }, limits: { fieldSize: 64 * 1024, fields: 200, parts: 1000 } });
      } catch {
        source.resume();
        return resolve();
      }
      parser.on('field', (name, value) => {
        if (Object.keys(this.fields).length < 100) this.fields[name] = value.slice(0, 4096);
      });
      parser.on('file', (field, file, info) => {
        const entry = { field, filename: info.filename ?? null, content_type: info.mimeType ?? null, bytes: 0 };
        if (this.files.length < 100) this.files.push(entry);
        file.on('data', (c: Buffer) => (entry.bytes += c.length));
      });
      parser.on('close', () => resolve());
      parser.on('error', () => {
        // a malformed form is the upstream's to refuse; what was read is what the record keeps
        source.unpipe(parser);
        source.resume();
        resolve();
      });
      source.on('error', () => resolve());
      source.pipe(parser);
    });
  }

  /** What the form held, once the upload is over (a bounded wait: the record never waits on a stuck parser). */
  async summary(): Promise<{ model: string | null; body: Record<string, unknown> }> {
    await Promise.race([this.done, new Promise((r) => setTimeout(r, 1000).unref())]);
    return { model: this.fields.model ?? null, body: { ...this.fields, files: this.files } };
  }
}

/** Reads what a relayed request sends: JSON whole (BODY_LIMIT), anything else streamed (UPLOAD_LIMIT). */
export async function readRelayBody(req: IncomingMessage, method: string, limits: { json: number; upload: number }): Promise<RelayBody> {
  const type = req.headers['content-type'] ?? '';
  const length = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if ((method === 'GET' || method === 'DELETE' || method === 'HEAD') && !chunked && !length) return { kind: 'none' };
  if (!type && !chunked && !length) return { kind: 'none' };
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();

  if (JSON_TYPE.test(type) || (!type && method !== 'GET')) {
    if (length !== null && encoding === 'identity' && length > limits.json) throw new BodyTooLarge();
    const raw = await readBounded(decoded(req, encoding), limits.json, true).catch((err: unknown) => {
      throw err instanceof BodyTooLarge || err instanceof AppException ? err : AppException.invalid('The request body was not received completely');
    });
    if (!raw.length) return { kind: 'none' };
    refuseOversizedJson(raw, FORWARDED_JSON_BOUNDS);
    const text = raw.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw AppException.invalid('Request body is not valid JSON');
    }
    return { kind: 'json', raw, text, parsed };
  }

  if (encoding !== 'identity') {
    throw new AppException('invalid_request', `Content-Encoding ${encoding} is not accepted on uploads; send them uncompressed`, { status: 415, code: 'unsupported_encoding' });
  }
  if (length !== null && length > limits.upload) throw new BodyTooLarge();
  const counter = new ByteCounter(limits.upload);
  req.pipe(counter);
  req.on('error', (err) => counter.destroy(err));
  let form: FormFields | null = null;
  let stream: Readable = counter;
  if (/^multipart\/form-data\b/i.test(type)) {
    // one stream to the upstream, one to the form reader; the slower of the two paces the client
    const toUpstream = new PassThrough();
    const toForm = new PassThrough();
    counter.pipe(toUpstream);
    counter.pipe(toForm);
    counter.on('error', (err) => toUpstream.destroy(err));
    form = new FormFields(type, toForm);
    stream = toUpstream;
  }
  return { kind: 'stream', contentType: type, length, stream, counter, form };
}

function decoded(req: IncomingMessage, encoding: string): Readable {
  if (encoding === 'identity') return req;
  const inflate = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : encoding === 'br' ? createBrotliDecompress() : null;
  if (!inflate) throw new AppException('invalid_request', `Unsupported Content-Encoding: ${encoding}`, { status: 415, code: 'unsupported_encoding' });
  req.pipe(inflate);
  inflate.on('error', () => undefined);
  const out = new PassThrough();
  inflate.on('error', () => out.destroy(AppException.invalid('The request body could not be decompressed')));
  inflate.pipe(out);
  return out;
}

/** Object ids a JSON body names (affinity): the fields the OpenAI API uses for them, top level and in tools. */
export function referencedIds(body: unknown): string[] {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return [];
  const b = body as Record<string, unknown>;
  const ids: string[] = [];
  const add = (v: unknown) => {
    if (typeof v === 'string' && v && v.length <= 256) ids.push(v);
    else if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { id?: unknown }).id === 'string') ids.push((v as { id: string }).id);
  };
  const addAll = (v: unknown) => (Array.isArray(v) ? v.slice(0, 100).forEach(add) : add(v));
  for (const field of ['previous_response_id', 'conversation', 'file_id', 'input_file_id', 'training_file', 'validation_file', 'assistant_id', 'thread_id', 'upload_id', 'container']) add(b[field]);
  for (const field of ['file_ids', 'vector_store_ids']) addAll(b[field]);
  if (Array.isArray(b.tools)) {
    for (const tool of b.tools.slice(0, 100)) {
      if (tool && typeof tool === 'object') {
        addAll((tool as Record<string, unknown>).vector_store_ids);
        add((tool as Record<string, unknown>).container);
      }
    }
  }
  return ids;
}

/** Object ids an answer makes known (its own id, and files it produced), to be owned like the call's object. */
export function madeIds(answer: unknown): string[] {
  if (!answer || typeof answer !== 'object' || Array.isArray(answer)) return [];
  const a = answer as Record<string, unknown>;
  const ids: string[] = [];
  if (typeof a.id === 'string' && a.id && !(typeof a.object === 'string' && a.object.endsWith('.deleted')) && a.deleted !== true) ids.push(a.id);
  for (const field of ['output_file_id', 'error_file_id', 'fine_tuned_model']) if (typeof a[field] === 'string' && a[field]) ids.push(a[field] as string);
  if (a.file && typeof a.file === 'object' && typeof (a.file as { id?: unknown }).id === 'string') ids.push((a.file as { id: string }).id);
  if (Array.isArray(a.result_files)) for (const f of a.result_files.slice(0, 100)) if (typeof f === 'string') ids.push(f);
  return ids.filter((id) => id.length <= 256);
}

/** Relayed model calls with a JSON body that take OpenAI's `safety_identifier` (the proxy's own routes add theirs). */
const TAKES_SAFETY_IDENTIFIER = new Set(['POST /v1/images/generations']);

/** The body with the safety identifier added after the opening brace (the client's bytes otherwise kept), when it applies. */
export function withSafetyIdentifier(body: RelayBody, route: { method: string; template: string }, safetyId: string | null): RelayBody {
  if (safetyId === null || body.kind !== 'json' || !TAKES_SAFETY_IDENTIFIER.has(`${route.method} ${route.template}`)) return body;
  const parsed = body.parsed;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return body;
  const fields = parsed as Record<string, unknown>;
  if (!addsSafetyIdentifier(fields, safetyId)) return body;
  const raw = withLeadingMembers(body.raw, [`"safety_identifier":${JSON.stringify(safetyId)}`], Object.keys(fields).length === 0);
  return { kind: 'json', raw, text: raw.toString('utf8'), parsed: { safety_identifier: safetyId, ...fields } };
}
