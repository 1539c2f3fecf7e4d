import { describe, expect, it } from 'vitest';
import { StreamCapture } from './exchange-capture';

const resp = (extra: object = {}) => ({ id: 'resp_1', object: 'response', model: 'gpt-4o-mini-2024-07-18', status: 'in_progress', output: [], ...extra });

/** Feeds a `/v1/responses` stream's events (type, data) to a capture. */
function capture(events: [string, object | string][]): StreamCapture {
  const c = StreamCapture.for('responses');
  for (const [type, data] of events) c.onEvent(type, typeof data === 'string' ? data : JSON.stringify({ type, ...data }));
  return c;
}

const deltas = (n: number, size = 1): [string, object][] =>
  Array.from({ length: n }, (_, i) => ['response.output_text.delta', { sequence_number: i + 1, delta: `${i}`.padEnd(size, '.') + ' ' }]);

describe('StreamCapture for /v1/responses', () => {
  it('a stream that ends with its final response is recorded from that response', () => {
    const done = resp({ status: 'completed', output: [{ type: 'message', content: [{ type: 'output_text', text: 'the final text' }] }], usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 } });
    const c = capture([['response.created', { response: resp() }], ...deltas(5), ['response.completed', { response: done }]]);
    expect(c.terminal).toBe(true);
    expect(c.complete).toBe(true);
    const r = c.result();
    expect(r).toMatchObject({ responseId: 'resp_1', model: 'gpt-4o-mini-2024-07-18', outputText: 'the final text', usage: { input: 3, output: 4, total: 7 } });
    expect(r.responseBody).toMatchObject({ status: 'completed' });
  });

  it('a stream cut before its final response: the text and what was generated come from the deltas, in order', () => {
    // far more delta text than is kept unparsed: the deltas parsed midway and those parsed at the end join in order
    const all = deltas(3000, 40);
    const c = capture([['response.created', { response: resp() }], ...all, ['response.reasoning_summary_text.delta', { delta: 'why' }]]);
    expect(c.complete).toBe(false);
    const r = c.result();
    const text = all.map(([, d]) => (d as { delta: string }).delta).join('');
    expect(r.outputText).toBe(text);
    expect(r.streamedText).toBe(text + 'why');
    expect(r.usage).toBeNull();
    expect(r.responseBody).toMatchObject({ id: 'resp_1', status: 'in_progress' });
  });

  it('a final response without usage or text: the deltas give the text and the estimate what was generated', () => {
    const c = capture([['response.created', { response: resp() }], ...deltas(4), ['response.completed', { response: resp({ status: 'completed' }) }]]);
    const r = c.result();
    expect(r.usage).toBeNull();
    expect(r.outputText).toBe('0 1 2 3 ');
    expect(r.streamedText).toBe('0 1 2 3 ');
  });

  it('events without an event line are read by their type', () => {
    const c = capture([['', JSON.stringify({ type: 'response.created', response: resp() })], ['', JSON.stringify({ type: 'response.output_text.delta', delta: 'hi' })]]);
    expect(c.result()).toMatchObject({ responseId: 'resp_1', outputText: 'hi', streamedText: 'hi' });
  });

  it('a malformed delta of a stream cut short is found when the deltas are read', () => {
    const c = capture([['response.created', { response: resp() }], ['response.output_text.delta', '<<not json>>']]);
    expect(c.malformed).toBe(false);
    c.result();
    expect(c.malformed).toBe(true);
  });
});
