import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { MetricsService } from '../../src/metrics/metrics.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg } from '../support/proxy-test-helpers';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a comment (# HELP / # TYPE) or a sample
 * `name{label="value",…} number`; a sample's family must have been declared by # TYPE before it.
 */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      if (m[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(m[3]);
        types.set(m[2], m[3]);
      }
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|NaN|Nan|\+Inf|-Inf)( -?\d+)?$/.exec(line);
    // prom-client writes an empty event-loop-lag mean as `Nan`, which Prometheus reads as NaN (its float parser
    // ignores case); the reader takes it too
    if (!m) throw new Error(`not a valid exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/g;
      let consumed = 0;
      for (let l; (l = re.exec(m[3])); ) {
        labels[l[1]] = l[2];
        consumed += l[0].length;
      }
      if (consumed !== m[3].length) throw new Error(`bad label set: ${line}`);
    }
    const family = m[1].replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]) && !types.has(family)) throw new Error(`sample without # TYPE: ${line}`);
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return { samples, types };
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);

describe('GET /metrics', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  const scrape = async () => {
    const res = await fetch(`${app.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    return { text, ...parseExposition(text) };
  };

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('parses as the Prometheus text format, without a token, with every metric of the contract', async () => {
    const { types, samples } = await scrape();
    const expected: [string, string][] = [
      ['openai_proxy_http_requests_total', 'counter'],
      ['openai_proxy_http_request_duration_seconds', 'histogram'],
      ['openai_proxy_proxied_requests_total', 'counter'],
      ['openai_proxy_request_duration_seconds', 'histogram'],
      ['openai_proxy_upstream_duration_seconds', 'histogram'],
      ['openai_proxy_overhead_seconds', 'histogram'],
      ['openai_proxy_time_to_first_byte_seconds', 'histogram'],
      ['openai_proxy_tokens_total', 'counter'],
      ['openai_proxy_cost_usd_total', 'counter'],
      ['openai_proxy_upstream_retries_total', 'counter'],
      ['openai_proxy_circuit_breakers', 'gauge'],
      ['openai_proxy_limit_refusals_total', 'counter'],
      ['openai_proxy_record_queue_depth', 'gauge'],
      ['openai_proxy_db_pool_connections', 'gauge'],
      ['process_cpu_seconds_total', 'counter'],
    ];
    for (const [name, type] of expected) expect(types.get(name), name).toBe(type);
    expect(value(samples, 'openai_proxy_db_pool_connections', { state: 'total' })).toBeGreaterThan(0);
    expect(samples.some((s) => s.name === 'openai_proxy_record_queue_depth')).toBe(true);
    expect(samples.filter((s) => s.name === 'openai_proxy_circuit_breakers').map((s) => s.labels.state).sort()).toEqual(['closed', 'half_open', 'open']);
  });

  it('counters move with traffic: requests, latencies, tokens and cost by model, retries, limit refusals', async () => {
    const o = await proxyOrg(app, fake.url, `sk-metrics-${randomUUID()}`);
    const before = (await scrape()).samples;

    const ok = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini-2024-07-18', input: 'count me' });
    expect(ok.status).toBe(200);
    const row = (await o.call('GET', `/v1/requests/${ok.headers.get('x-request-id')}`)).body;
    fake.enqueue({ kind: 'status', status: 503 });
    expect((await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
    const user = await createUser(app, o.orgId, `limited-${randomUUID()}`);
    await app.app.get(LimitsAdminService).setUserLimits(user.id, { rpm: 1 }, cliActor());
    const limited = (body: unknown) => api(app, o.token, user.external_id)('POST', '/v1/responses', body);
    expect((await limited({ model: 'gpt-4o-mini', input: 'one' })).status).toBe(200);
    expect((await limited({ model: 'gpt-4o-mini', input: 'two' })).status).toBe(429);

    const after = (await scrape()).samples;
    const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    expect(delta('openai_proxy_http_requests_total', { method: 'POST', route: '/v1/responses', status: '200' })).toBe(2);
    expect(delta('openai_proxy_http_requests_total', { method: 'POST', route: '/v1/responses', status: '429' })).toBe(1);
    expect(delta('openai_proxy_http_requests_total', { route: '/v1/requests/:request_id', status: '200' })).toBe(1);
    expect(delta('openai_proxy_proxied_requests_total', { route: 'responses', status: 'completed', model: 'gpt-4o-mini' })).toBe(2);
    expect(delta('openai_proxy_proxied_requests_total', { route: 'chat.completions', model: 'gpt-4o' })).toBe(1);
    expect(delta('openai_proxy_request_duration_seconds_count', { route: 'responses' })).toBe(2);
    expect(delta('openai_proxy_upstream_duration_seconds_count', { route: 'chat.completions' })).toBe(1);
    expect(delta('openai_proxy_overhead_seconds_count', { route: 'responses' })).toBe(2);
    expect(delta('openai_proxy_time_to_first_byte_seconds_count', { route: 'responses' })).toBe(2);
    expect(delta('openai_proxy_tokens_total', { model: 'gpt-4o-mini', type: 'input', source: 'proxy' })).toBeGreaterThanOrEqual(row.usage.input_tokens);
    expect(delta('openai_proxy_tokens_total', { model: 'gpt-4o-mini', type: 'output', source: 'proxy' })).toBeGreaterThanOrEqual(row.usage.output_tokens);
    expect(delta('openai_proxy_cost_usd_total', { model: 'gpt-4o-mini', source: 'proxy' })).toBeGreaterThanOrEqual(row.cost * 0.999);
    expect(delta('openai_proxy_upstream_retries_total', { route: 'chat.completions' })).toBe(1);
    expect(delta('openai_proxy_limit_refusals_total', { kind: 'requests', scope: 'user' })).toBe(1);
    // a histogram's buckets are cumulative and end at +Inf = count
    const inf = after.find((s) => s.name === 'openai_proxy_request_duration_seconds_bucket' && s.labels.route === 'responses' && s.labels.le === '+Inf')!;
    expect(inf.value).toBe(value(after, 'openai_proxy_request_duration_seconds_count', { route: 'responses' }));
  });

  it('phase sums: where a proxied call spent its time, by route and whether streamed', async () => {
    const o = await proxyOrg(app, fake.url, `sk-phases-${randomUUID()}`);
    const before = (await scrape()).samples;
    // the upstream takes 80 ms before its first byte, then 5 events 30 ms apart
    Object.assign(fake.options, { firstByteMs: 80, eventIntervalMs: 30 });
    try {
      expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'time me' })).status).toBe(200);
      const streamed = await fetch(`${app.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream me' }], stream: true }),
      });
      expect(streamed.status).toBe(200);
      expect(await streamed.text()).toContain('[DONE]');
    } finally {
      Object.assign(fake.options, { firstByteMs: 0, eventIntervalMs: 0 });
    }
    const after = (await scrape()).samples;
    const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    const seconds = (route: string, stream: string, phase: string) => delta('openai_proxy_call_phase_seconds_total', { route, stream, phase });
    for (const phase of ['auth', 'body', 'prepare', 'upstream', 'relay', 'record', 'answer']) {
      expect(delta('openai_proxy_call_phases_total', { route: 'responses', stream: 'false', phase }), phase).toBe(1);
      expect(delta('openai_proxy_call_phases_total', { route: 'chat.completions', stream: 'true', phase }), phase).toBe(1);
    }
    // the upstream's wait shows in the upstream phase, its events in the stream's relay phase, not elsewhere
    expect(seconds('responses', 'false', 'upstream')).toBeGreaterThanOrEqual(0.075);
    expect(seconds('responses', 'false', 'relay')).toBeLessThan(0.075);
    expect(seconds('chat.completions', 'true', 'upstream')).toBeGreaterThanOrEqual(0.075);
    expect(seconds('chat.completions', 'true', 'relay')).toBeGreaterThanOrEqual(0.1);
  });

  it('no label carries a user id, a key, an organization, a path or free text', async () => {
    const apiKey = `sk-secret-${randomUUID()}`;
    const o = await proxyOrg(app, fake.url, apiKey);
    const externalId = `leaky-user-${randomUUID()}`;
    const model = `custom-model-${randomUUID()}`;
    const call = api(app, o.token, externalId);
    expect((await call('POST', '/v1/responses', { model, input: 'label test' })).status).toBe(200);
    expect((await call('GET', `/v1/requests/req_${randomUUID().replace(/-/g, '').slice(0, 24)}`)).status).toBe(404);
    expect((await call('GET', `/v1/no-such-route/${externalId}`)).status).toBe(404);
    const internal = (await app.dataSource.query('SELECT id FROM users WHERE external_id = $1', [externalId]))[0].id;

    const { text, samples } = await scrape();
    for (const secret of [apiKey, apiKey.slice(-4) + '"', externalId, internal, o.orgId, o.token, model, 'no-such-route']) {
      expect(text).not.toContain(secret);
    }
    expect(value(samples, 'openai_proxy_http_requests_total', { route: 'unmatched', status: '404' })).toBeGreaterThan(0);
    expect(value(samples, 'openai_proxy_proxied_requests_total', { model: 'other' })).toBeGreaterThan(0);
    const allowed: Record<string, RegExp> = {
      method: /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|OTHER)$/,
      route: /^(\/[a-z0-9_.:/-]*|unmatched|responses|chat\.completions|models|other)$/,
      status: /^(\d{3}|completed|failed|client_aborted|upstream_error|upstream_timeout|interrupted|pending|rate_limited|rejected|other)$/,
      model: /^[a-z0-9.:-]+$/,
      type: /^(input|output)$/,
      source: /^(proxy|analysis)$/,
      kind: /^(requests|tokens|daily_budget|monthly_budget)$/,
      scope: /^(organization|user)$/,
      state: /^(closed|open|half_open|total|idle|waiting)$/,
      le: /^([0-9.e+-]+|\+Inf)$/,
      // an upstream key by the first 8 characters of its id (never the key), bounded to a few hundred values
      key: /^([0-9a-f]{8}|other)$/,
      event: /^(served|rate_limited|invalid|error|failover)$/,
      stream: /^(true|false)$/,
      phase: /^(auth|body|prepare|upstream|relay|record|answer)$/,
    };
    const known = new Set(['none', 'other', ...Object.keys((await import('../../src/pricing/prices.json')).default)]);
    for (const s of samples.filter((x) => x.name.startsWith('openai_proxy_'))) {
      for (const [label, v] of Object.entries(s.labels)) {
        expect(allowed[label], `label ${label} of ${s.name}`).toBeDefined();
        expect(v, `${s.name}{${label}}`).toMatch(allowed[label]);
        if (label === 'model') expect(known.has(v), v).toBe(true);
        if (label === 'route' && v.startsWith('/')) expect(v).not.toMatch(/[0-9a-f]{8}-|req_/);
      }
    }
  });

  it('the model label is the price-table family or "other"', () => {
    const metrics = app.app.get(MetricsService);
    expect(metrics.modelLabel('gpt-4o-mini-2024-07-18')).toBe('gpt-4o-mini');
    expect(metrics.modelLabel('GPT-4O')).toBe('gpt-4o');
    expect(metrics.modelLabel('my-fine-tune:ft-abc123')).toBe('other');
    expect(metrics.modelLabel(null)).toBe('none');
  });

  it('model names clients send cannot grow memory: long names are "other" and never remembered', () => {
    const metrics = app.app.get(MetricsService);
    const memo = (metrics as unknown as { modelMemo: Map<string, string> }).modelMemo;
    // 2,000 distinct 64 KiB names (as 1,000 × 9 MB would be, at a scale a test can afford)
    for (let i = 0; i < 2000; i++) expect(metrics.modelLabel(`${i}-`.padEnd(64 * 1024, 'x'))).toBe('other');
    expect(metrics.modelLabel('gpt-4o-2024-05-13')).toBe('gpt-4o-2024-05-13');
    let bytes = 0;
    for (const key of memo.keys()) bytes += key.length;
    expect(memo.size).toBeLessThanOrEqual(1000);
    expect(bytes).toBeLessThanOrEqual(1000 * 256);
  });
});
