import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import type { UpstreamResponse } from '../upstream/upstream-client';
import { KeyScrubber } from '../upstream/upstream-errors';
import { StreamRelay, usageObjectAt, type RelayedCall } from './stream-relay';

const hasUsageObject = (region: Buffer) => usageObjectAt(region, 0) >= 0;

describe('hasUsageObject', () => {
  const region = (...data: string[]) => Buffer.from(data.map((d) => `data: ${d}\n\n`).join(''));

  it('finds the usage chunk of a chat stream, however the JSON is spaced', () => {
    expect(hasUsageObject(region('{"choices":[],"usage":{"prompt_tokens":1}}'))).toBe(true);
    expect(hasUsageObject(region('{"choices": [], "usage" : \t{"prompt_tokens": 1}}'))).toBe(true);
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"a"}}],"usage":null}', '{"choices":[],"usage":{"total_tokens":3}}'))).toBe(true);
  });

  it('passes over chunks whose usage is null, and "usage" quoted inside a string', () => {
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"x"}}],"usage":null}'))).toBe(false);
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"say \\"usage\\": {1}"}}],"usage":null}'))).toBe(false);
    expect(hasUsageObject(region('[DONE]'))).toBe(false);
    expect(hasUsageObject(Buffer.from('data: {"usage"'))).toBe(false);
  });
});

describe('usageObjectAt', () => {
  it('gives where each usage object starts, from a position on', () => {
    const r = Buffer.from('data: {"usage":null}\n\ndata: {"usage":{"a":1}}\n\ndata: {"usage": {"b":2}}\n\n');
    const first = usageObjectAt(r, 0);
    expect(r.subarray(first, first + 9).toString()).toBe('"usage":{');
    const second = usageObjectAt(r, first + 1);
    expect(r.subarray(second, second + 10).toString()).toBe('"usage": {');
    expect(usageObjectAt(r, second + 1)).toBe(-1);
  });
});

/** A stream of `/v1/responses`: created, n text deltas, completed (as OpenAI sends it, event lines and all). */
function responsesStream(n: number): Buffer[] {
  const ev = (type: string, body: object) => Buffer.from(`event: ${type}\ndata: ${JSON.stringify({ type, ...body })}\n\n`);
  const resp = { id: 'resp_1', object: 'response', model: 'gpt-4o-mini', status: 'in_progress', output: [] as unknown[] };
  const out = [ev('response.created', { response: resp })];
  for (let i = 0; i < n; i++) out.push(ev('response.output_text.delta', { delta: `w${i} ` }));
  const text = Array.from({ length: n }, (_, i) => `w${i} `).join('');
  const done = { ...resp, status: 'completed', output: [{ type: 'message', content: [{ type: 'output_text', text }] }], usage: { input_tokens: 1, output_tokens: n, total_tokens: n + 1 } };
  out.push(ev('response.completed', { response: done }));
  return out;
}

/**
 * Runs a relay in a real HTTP server for one request: the upstream body gives `chunks` all in one tick, and the
 * record of the final event is committed only when the test says so.
 */
async function relayOnce(chunks: Buffer[], o: { pendingRow?: Promise<boolean> } = {}) {
  let commit!: () => void;
  const committed = new Promise<void>((r) => (commit = r));
  let finished = 0;
  const writes: number[] = [];
  let drainListeners = 0;
  const server = http.createServer((req, res) => {
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    res.write = ((...a: unknown[]) => {
      writes.push((a[0] as Buffer).length);
      drainListeners = Math.max(drainListeners, res.listenerCount('drain'));
      return write(...a);
    }) as typeof res.write;
    const body = new Readable({ read() {} }) as UpstreamResponse['body'];
    const pendingRow = o.pendingRow ?? Promise.resolve(true);
    const record = { awaitsPendingRow: o.pendingRow !== undefined, done: false, unrecorded: false, pendingRow: () => pendingRow } as unknown as RecordHandle;
    const call: RelayedCall = {
      endpoint: 'responses',
      res,
      scrubber: new KeyScrubber('sk-test-relay-0000000000000000'),
      record,
      usageUnrequested: false,
      clientGone: false,
      finish: async () => {
        finished++;
        await committed;
        return true;
      },
    };
    void new StreamRelay(call, { statusCode: 200, headers: {}, body }, { maxBodyBytes: 1 << 20, streamIdleTimeoutMs: 10_000 }).run();
    for (const c of chunks) body.push(c);
    body.push(null);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  let received = '';
  const ended = new Promise<void>((resolve, reject) => {
    http
      .get({ port, host: '127.0.0.1', path: '/' }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => (received += d));
        res.on('end', resolve);
      })
      .on('error', reject);
  });
  return {
    commit,
    ended,
    received: () => received,
    finished: () => finished,
    writes: () => writes,
    /** the most 'drain' listeners the response had at a write */
    drainListeners: () => drainListeners,
    close: () => server.close(),
  };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('StreamRelay', () => {
  it('an upstream that sends its whole stream at once: the events before the final one do not wait for the record', async () => {
    const r = await relayOnce([Buffer.concat(responsesStream(20))]);
    try {
      await until(() => r.received().includes('w19'));
      expect(r.finished()).toBe(1);
      expect(r.received().match(/response\.output_text\.delta/g)?.length).toBe(40);
      expect(r.received()).not.toContain('response.completed');
      r.commit();
      await r.ended;
      expect(r.received()).toContain('event: response.completed');
    } finally {
      r.close();
    }
  });

  it('chunks the body gives in one tick are relayed in one write, the final event in its own once recorded', async () => {
    const r = await relayOnce(responsesStream(20));
    try {
      await until(() => r.received().includes('w19'));
      expect(r.writes().length).toBe(1);
      r.commit();
      await r.ended;
      expect(r.writes().length).toBe(2);
      expect(r.received().match(/^event: /gm)?.length).toBe(22);
    } finally {
      r.close();
    }
  });

  it('what was held while the pending row was written is relayed in bounded regions, in order', async () => {
    let written!: (ok: boolean) => void;
    const events = responsesStream(4000);
    const r = await relayOnce(events, { pendingRow: new Promise<boolean>((resolve) => (written = resolve)) });
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(r.received()).toBe('');
      written(true);
      await until(() => r.received().includes('w3999'));
      const sizes = r.writes();
      const held = Buffer.concat(events.slice(0, -1)).length;
      expect(sizes.length).toBeGreaterThan(held / (64 * 1024) - 1);
      for (const n of sizes) expect(n).toBeLessThan(64 * 1024 + 200);
      // regions written while the socket is full wait for one drain, not one each
      expect(r.drainListeners()).toBeLessThanOrEqual(1);
      r.commit();
      await r.ended;
      const deltas = [...r.received().matchAll(/"delta":"w(\d+) "/g)].map((m) => Number(m[1]));
      expect(deltas).toEqual(Array.from({ length: 4000 }, (_, i) => i));
      expect(r.received().endsWith('\n\n')).toBe(true);
      expect(r.received()).toContain('event: response.completed');
    } finally {
      r.close();
    }
  });
});
