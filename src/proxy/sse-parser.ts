import { createParser, type EventSourceParser } from 'eventsource-parser';
import { StringDecoder } from 'node:string_decoder';

export type SseEventHandler = (event: string, data: string) => void;

const LF = 10;
const CR = 13;

/**
 * Cuts a byte stream into whole events (each ends with a blank line), by the WHATWG event-stream line rules: CRLF,
 * LF or a lone CR ends a line. The relay sends whole events only, so an event can be inspected (a key scrubbed, an
 * unrequested usage chunk left out) before its first byte leaves, and a client never holds half an event when an
 * error event follows. Bytes are never changed here.
 */
export class SseFramer {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** the last byte ended a line */
  private lineStart = true;
  /** the last byte was a CR: an LF right after it ends the same line */
  private afterCr = false;
  /** where each event of the last region ends (offsets into that region) */
  readonly ends: number[] = [];

  /** The whole events this chunk completes (with the bytes held from earlier chunks), or null; the rest is held. */
  push(chunk: Buffer): Buffer | null {
    const ends = this.ends;
    ends.length = 0;
    const base = this.partialBytes;
    if (!this.afterCr && chunk.indexOf(CR) < 0) {
      // the common case, LF only: one native search per line
      let i = chunk.indexOf(LF);
      while (i >= 0) {
        if (i === 0 ? this.lineStart : chunk[i - 1] === LF) ends.push(base + i + 1);
        i = chunk.indexOf(LF, i + 1);
      }
      if (chunk.length) this.lineStart = chunk[chunk.length - 1] === LF;
    } else {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i];
        if (b === LF && this.afterCr) {
          this.afterCr = false;
          // the LF of a CRLF that ended a blank line belongs to that event
          if (ends.length && ends[ends.length - 1] === base + i) ends[ends.length - 1] = base + i + 1;
          continue;
        }
        this.afterCr = b === CR;
        if (b === LF || b === CR) {
          if (this.lineStart) ends.push(base + i + 1);
          this.lineStart = true;
        } else this.lineStart = false;
      }
    }
    if (!ends.length) {
      if (chunk.length) {
        this.partial.push(chunk);
        this.partialBytes += chunk.length;
      }
      return null;
    }
    const cut = ends[ends.length - 1] - base;
    let region = cut === chunk.length ? chunk : chunk.subarray(0, cut);
    if (this.partial.length) {
      this.partial.push(region);
      region = Buffer.concat(this.partial, base + cut);
      this.partial = [];
    }
    this.partialBytes = 0;
    if (cut < chunk.length) {
      this.partial.push(chunk.subarray(cut));
      this.partialBytes = chunk.length - cut;
    }
    return region;
  }

  /** bytes of an event not yet ended */
  get held(): number {
    return this.partialBytes;
  }

  /** Takes the bytes of an event not yet ended (the stream is over). */
  rest(): Buffer {
    const out = this.partial.length === 1 ? this.partial[0] : Buffer.concat(this.partial, this.partialBytes);
    this.partial = [];
    this.partialBytes = 0;
    return out;
  }
}

/**
 * Server-sent-events parser (eventsource-parser, which follows the WHATWG rules: a leading BOM, comments, unknown
 * fields and events without data are ignored, any line ending is accepted) beside the byte relay: it never
 * re-serializes anything, it only hands complete events to the handler so the recorder can pick out usage, ids and
 * text.
 */
export class SseParser {
  private readonly decoder = new StringDecoder('utf8');
  private readonly parser: EventSourceParser;
  /** events dispatched so far */
  events = 0;

  constructor(onEvent: SseEventHandler) {
    this.parser = createParser({
      onEvent: (e) => {
        this.events++;
        onEvent(e.event ?? '', e.data);
      },
    });
  }

  push(chunk: Buffer): void {
    const text = this.decoder.write(chunk);
    if (text) this.parser.feed(text);
  }
}
