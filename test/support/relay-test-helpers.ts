import { expect } from 'vitest';
import type { ApiRecordedRequest } from './fake-openai-api';
import type { FakeUpstream } from './fake-upstream';
import { pollRequest, type ProxyTestOrg } from './proxy-test-helpers';

/** The upstream key `proxyOrg` gives its organization: the one every relayed call must reach the fake with. */
export const ORG_UPSTREAM_KEY = 'sk-test-proxy-0001';

/** A relayed call as the client, the fake and the proxy's record saw it. */
export interface Relayed {
  /** the fake's record of the call (the request the proxy sent on) */
  upstream: ApiRecordedRequest;
  /** GET /v1/requests/{X-Request-ID}, once the record is no longer pending */
  record: any;
}

/**
 * Follows one relayed call by the headers the proxy answered with: `X-Upstream-Request-ID` names the fake's answer,
 * `X-Request-ID` the record. Checks what every relayed call shares: one upstream request with the organization's
 * key (never the client's token or X-User-ID), and a record with the method, route template, statuses and upstream
 * request id.
 */
export async function relayed(
  o: ProxyTestOrg,
  fake: FakeUpstream,
  headers: Headers,
  expected: { method: string; route: string; status?: string; upstreamStatus?: number },
): Promise<Relayed> {
  const requestId = headers.get('x-request-id');
  const upstreamRequestId = headers.get('x-upstream-request-id');
  expect(requestId).toMatch(/^req_[A-Za-z0-9_-]{24}$/);
  expect(upstreamRequestId).toMatch(/^req_[0-9a-f]{32}$/);
  const seen = fake.api.recorded().filter((r) => r.requestId === upstreamRequestId);
  expect(seen).toHaveLength(1);
  const upstream = seen[0];
  expect(upstream.method).toBe(expected.method);
  expect(upstream.headers.authorization).toBe(`Bearer ${ORG_UPSTREAM_KEY}`);
  expect(upstream.headers['x-user-id']).toBeUndefined();

  const record = await pollRequest(o.call, requestId!, (r) => r.status !== 'pending');
  expect(record).toMatchObject({
    id: requestId,
    user_id: o.userId,
    method: expected.method,
    route: expected.route,
    status: expected.status ?? 'completed',
    upstream_status: expected.upstreamStatus ?? 200,
    upstream_request_id: upstreamRequestId,
    key_id: o.keyId,
    key_source: 'organization',
  });
  return { upstream, record };
}

/** A JSON body is stored as it was sent. */
export function expectJsonRequestStored(r: Relayed): void {
  expect(r.record.request_body).toEqual(JSON.parse(r.upstream.rawBody));
  expect(r.record.request_content_type).toBeNull();
  expect(r.record.request_bytes).toBe(r.upstream.requestBytes);
}

/** A multipart upload is not stored: its type and size are, and none of its file content. */
export function expectMultipartNotStored(r: Relayed, fileContent: Buffer): void {
  expect(r.record.request_content_type).toBe(r.upstream.headers['content-type']);
  expect(r.record.request_content_type).toMatch(/^multipart\/form-data; boundary=/);
  expect(r.record.request_bytes).toBe(r.upstream.requestBytes);
  expect(r.record.request_bytes).toBeGreaterThan(fileContent.length);
  expect(JSON.stringify(r.record.request_body ?? null)).not.toContain(fileContent.toString('latin1').slice(0, 64));
}

/** A binary answer is not stored: its type and size are. */
export function expectBinaryAnswerNotStored(r: Relayed, contentType: string, bytes: number): void {
  expect(r.upstream.response).toMatchObject({ contentType, bytes });
  expect(r.record).toMatchObject({ response_body: null, response_content_type: contentType, response_bytes: bytes });
}
