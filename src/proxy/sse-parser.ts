import { StringDecoder } from 'node:string_decoder';

export type SseEventHandler = (event: string, data: string) => void;

const KNOWN_FIELDS = new Set(['data', 'event', 'id', 'retry']);

/**
 * Incremental server-sent-events parser that runs beside the byte relay: it never re-serializes anything,
 * it only hands complete events to the handler so the recorder can pick out usage, ids and text.
 * A line that is neither a known field nor a comment marks the stream malformed.
 */
export class SseParser {
  private readonly decoder = new StringDecoder('utf8');
  // a line spanning many chunks (a large `response.completed`) is joined once, not re-concatenated per chunk
  private parts: string[] = [];
  private event = '';
  private data: string | null = null;
  malformed = false;
  /** complete events seen so far */
  events = 0;

  constructor(private readonly onEvent: SseEventHandler) {}

  /** true when the bytes so far stop inside an event (a partial line, or fields not yet ended by a blank line) */
  get midEvent(): boolean {
    return this.parts.length > 0 || this.data !== null || this.event !== '';
  }

  push(chunk: Buffer): void {
    this.feed(this.decoder.write(chunk));
  }

  private feed(text: string): void {
    let start = 0;
    let nl = text.indexOf('\n');
    if (nl < 0) {
      if (text) this.parts.push(text);
      return;
    }
    while (nl >= 0) {
      let line = text.slice(start, nl);
      if (this.parts.length) {
        this.parts.push(line);
        line = this.parts.join('');
        this.parts = [];
      }
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.line(line);
      start = nl + 1;
      nl = text.indexOf('\n', start);
    }
    if (start < text.length) this.parts.push(text.slice(start));
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data !== null || this.event) {
        const event = this.event;
        const data = this.data ?? '';
        this.event = '';
        this.data = null;
        this.events++;
        this.onEvent(event, data);
      }
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' comment */) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (!KNOWN_FIELDS.has(field)) {
      this.malformed = true;
      return;
    }
    if (field === 'data') this.data = this.data === null ? value : `${this.data}\n${value}`;
    else if (field === 'event') this.event = value;
  }
}
