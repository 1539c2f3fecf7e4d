import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';
import type { RunningServer } from '../../src/server';
import { api, createKey, createOrg, TestOrg } from './factories';

export interface ProxyTestOrg extends TestOrg {
  userId: string;
  keyId: string;
  client: OpenAI;
  call: ReturnType<typeof api>;
}

/** A fresh organization with an org-wide key on `upstreamUrl`, an SDK client pointed at the proxy, and a fetch helper. */
export async function proxyOrg(app: RunningServer & { url: string }, upstreamUrl: string, apiKey = 'sk-test-proxy-0001'): Promise<ProxyTestOrg> {
  const org = await createOrg(app);
  const key = await createKey(app, org.orgId, apiKey, { baseUrl: upstreamUrl });
  const userId = `user-${randomUUID()}@example.com`;
  const client = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: org.token, defaultHeaders: { 'X-User-ID': userId }, maxRetries: 0 });
  return { ...org, userId, keyId: (key as { id: string }).id, client, call: api(app, org.token, userId) };
}

/** Polls GET /v1/requests/{id} until `done(row)` (for outcomes recorded after the client left). */
export async function pollRequest(call: ProxyTestOrg['call'], id: string, done: (row: any) => boolean, timeoutMs = 8000): Promise<any> {
  const until = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < until) {
    const r = await call('GET', `/v1/requests/${id}`);
    last = r.body;
    if (r.status === 200 && done(r.body)) return r.body;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`request ${id} never reached the expected state; last: ${JSON.stringify(last)}`);
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 8000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Collects the SSE events of a fetch response body as {event, data}. */
export function parseSse(text: string): { event: string | null; data: string }[] {
  const out: { event: string | null; data: string }[] = [];
  for (const block of text.split(/\n\n/)) {
    if (!block.trim()) continue;
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    out.push({ event, data: data.join('\n') });
  }
  return out;
}
