import { addUsage, AnswerUsage, usageOfAnswer } from '../pricing/answer-usage';

/** The assistant's text kept with a session's record, at most (the rest of a long session is not stored). */
export const MAX_OUTPUT_TEXT_CHARS = 64 * 1024;

// Events are found by a byte search before anything is parsed: a session is mostly audio deltas, which are never
// parsed. Inside a JSON string these names would be escaped (\"response.done\"), so only an event's own type matches.
const RESPONSE_DONE = Buffer.from('"response.done"');
const SESSION_CREATED = Buffer.from('"session.created"');

/**
 * What a Realtime session used, read from the upstream's events as they are relayed: the usage of every
 * `response.done` summed (split by text, audio and image, as it is priced), the assistant's text and audio
 * transcripts (bounded), and the session's id and model from `session.created`.
 */
export class RealtimeTally {
  /** `response.done` events seen */
  responses = 0;
  sessionId: string | null = null;
  model: string | null = null;
  private summed: AnswerUsage | null = null;
  private text = '';

  /** `requestModel`: the model the session was opened with (the query's), which its usage is priced by */
  constructor(private readonly requestModel: string | null) {}

  /** An upstream text frame, as relayed. */
  observe(frame: Buffer): void {
    if (this.sessionId === null && frame.indexOf(SESSION_CREATED) >= 0) this.sessionCreated(parse(frame));
    if (frame.indexOf(RESPONSE_DONE) >= 0) this.responseDone(parse(frame));
  }

  /** The summed usage; null when no `response.done` reported any. */
  usage(): AnswerUsage | null {
    return this.summed;
  }

  outputText(): string | null {
    return this.text || null;
  }

  private sessionCreated(event: Record<string, unknown> | null): void {
    if (event?.type !== 'session.created') return;
    const session = event.session as Record<string, unknown> | undefined;
    if (typeof session?.id === 'string') this.sessionId = session.id;
    if (typeof session?.model === 'string') this.model = session.model;
  }

  private responseDone(event: Record<string, unknown> | null): void {
    if (event?.type !== 'response.done') return;
    this.responses++;
    const usage = usageOfAnswer('/v1/realtime', { model: this.requestModel ?? this.model }, event);
    if (usage) this.summed = this.summed ? addUsage(this.summed, usage) : usage;
    this.keepText((event.response as { output?: unknown } | undefined)?.output);
  }

  /** The text and transcripts of the response's messages (`output_text`/`output_audio`, and the beta's `text`/`audio`). */
  private keepText(output: unknown): void {
    if (!Array.isArray(output)) return;
    const parts: string[] = [];
    for (const item of output as { type?: unknown; content?: unknown }[]) {
      if (item?.type !== 'message' || !Array.isArray(item.content)) continue;
      for (const part of item.content as { text?: unknown; transcript?: unknown }[]) {
        const text = typeof part?.text === 'string' ? part.text : typeof part?.transcript === 'string' ? part.transcript : null;
        if (text) parts.push(text);
      }
    }
    if (!parts.length || this.text.length >= MAX_OUTPUT_TEXT_CHARS) return;
    const next = (this.text ? '\n' : '') + parts.join('');
    this.text = (this.text + next).slice(0, MAX_OUTPUT_TEXT_CHARS);
  }
}

function parse(frame: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(frame.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
