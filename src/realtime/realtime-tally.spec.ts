import { describe, expect, it } from 'vitest';
import { MAX_OUTPUT_TEXT_CHARS, RealtimeTally } from './realtime-tally';

const frame = (event: unknown) => Buffer.from(JSON.stringify(event));
const done = (usage: unknown, content: unknown[] = []) =>
  frame({ type: 'response.done', event_id: 'e', response: { object: 'realtime.response', output: [{ type: 'message', role: 'assistant', content }], usage } });
const usage = (input: number, output: number, cached: number) => ({
  total_tokens: input + output,
  input_tokens: input,
  output_tokens: output,
  input_token_details: { cached_tokens: cached, text_tokens: input, audio_tokens: 0 },
  output_token_details: { text_tokens: output, audio_tokens: 0 },
});

describe('RealtimeTally', () => {
  it('sums the usage of every response.done and keeps the text and transcripts', () => {
    const t = new RealtimeTally('gpt-realtime');
    t.observe(frame({ type: 'session.created', session: { id: 'sess_1', model: 'gpt-realtime' } }));
    t.observe(done(usage(100, 20, 0), [{ type: 'output_text', text: 'Hello' }]));
    t.observe(frame({ type: 'response.output_text.delta', delta: 'a "response.done" inside text' }));
    t.observe(done(usage(150, 30, 64), [{ type: 'output_audio', transcript: 'Again' }]));
    t.observe(done(null, [{ type: 'audio', transcript: ' beta' }]));
    expect(t).toMatchObject({ responses: 3, sessionId: 'sess_1', model: 'gpt-realtime' });
    expect(t.usage()).toEqual({ model: 'gpt-realtime', input: 250, output: 50, total: 300, cached: 64, reasoning: null, audioInput: 0, audioOutput: 0 });
    expect(t.outputText()).toBe('Hello\nAgain\n beta');
  });

  it('reports no usage when no response.done carried any, and ignores what is not an event', () => {
    const t = new RealtimeTally('gpt-realtime');
    t.observe(Buffer.from('"response.done" not json'));
    t.observe(frame(['response.done']));
    t.observe(frame({ type: 'response.created', note: '"response.done"' }));
    expect(t.usage()).toBeNull();
    expect(t.outputText()).toBeNull();
    expect(t.responses).toBe(0);
  });

  it('keeps a bounded text', () => {
    const t = new RealtimeTally('gpt-realtime');
    for (let i = 0; i < 3; i++) t.observe(done(usage(1, 1, 0), [{ type: 'output_text', text: 'x'.repeat(MAX_OUTPUT_TEXT_CHARS / 2) }]));
    expect(t.outputText()!.length).toBe(MAX_OUTPUT_TEXT_CHARS);
    expect(t.usage()!.total).toBe(6);
  });
});
