import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { actingHeaders, closeReason, readHandshake, sendableCloseCode, websocketProblem } from './realtime-handshake';
import { realtimeUrl } from './realtime-upstream';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const request = (url: string, headers: Record<string, string> = {}, method = 'GET') =>
  ({ url, method, headers: { upgrade: 'websocket', 'sec-websocket-key': KEY, 'sec-websocket-version': '13', ...headers } }) as unknown as IncomingMessage;

describe('readHandshake', () => {
  it('forwards the query as sent, less credentials, and records its parameters', () => {
    expect(readHandshake(request('/v1/realtime?model=gpt-realtime&x=%20a'))).toMatchObject({
      search: '?model=gpt-realtime&x=%20a',
      params: { model: 'gpt-realtime', x: ' a' },
      model: 'gpt-realtime',
    });
    const h = readHandshake(request('/v1/realtime?api-key=secret&model=m&Token=t'));
    expect(h.search).toBe('?model=m');
    expect(h.params).toEqual({ model: 'm' });
    expect(readHandshake(request('/v1/realtime?api-key=secret')).search).toBe('');
    expect(readHandshake(request('/v1/realtime'))).toMatchObject({ search: '', model: null, params: {} });
  });

  it("takes a browser's token from the subprotocol, answers `realtime`, and forwards the beta as a header", () => {
    const h = readHandshake(request('/v1/realtime?model=m', { 'sec-websocket-protocol': 'realtime, openai-insecure-api-key.eyJ.a.b, openai-beta.realtime-v1, openai-project.p' }));
    expect(h).toMatchObject({ tokenInProtocol: true, protocol: 'realtime', beta: 'realtime=v1' });
    expect(h.authHeaders.authorization).toBe('Bearer eyJ.a.b');
    // the Authorization header wins over the subprotocol
    const header = readHandshake(request('/v1/realtime', { authorization: 'Bearer h', 'sec-websocket-protocol': 'openai-insecure-api-key.p' }));
    expect(header).toMatchObject({ tokenInProtocol: false, protocol: null });
    expect(header.authHeaders.authorization).toBe('Bearer h');
    expect(readHandshake(request('/v1/realtime', { 'openai-beta': 'realtime=v1' })).beta).toBe('realtime=v1');
  });

  it('acts for the pinned user of a token passed as a subprotocol only', () => {
    const browser = readHandshake(request('/v1/realtime', { 'sec-websocket-protocol': 'openai-insecure-api-key.t' }));
    const claims = { org_id: 'o', jti: 'j', exp: 1, user_id: 'pinned', scopes: new Set(['proxy' as const]) };
    expect(actingHeaders(browser, claims)['x-user-id']).toBe('pinned');
    expect(actingHeaders(browser, { ...claims, user_id: undefined })['x-user-id']).toBeUndefined();
    const server = readHandshake(request('/v1/realtime', { authorization: 'Bearer t' }));
    expect(actingHeaders(server, claims)['x-user-id']).toBeUndefined();
  });
});

describe('websocketProblem', () => {
  it.each([
    [request('/v1/realtime'), null],
    [request('/v1/realtime', {}, 'POST'), 405],
    [request('/v1/realtime', { upgrade: 'h2c' }), 400],
    [request('/v1/realtime', { 'sec-websocket-key': 'short' }), 400],
    [request('/v1/realtime', { 'sec-websocket-version': '12' }), 426],
    [request('/v1/realtime', { 'sec-websocket-protocol': 'a, a' }), 400],
    [request('/v1/realtime', { 'sec-websocket-protocol': 'a,,b' }), 400],
    [request('/v1/realtime', { 'sec-websocket-protocol': 'a b' }), 400],
  ])('%#', (req, status) => {
    expect(websocketProblem(req)?.status ?? null).toBe(status);
  });
});

describe('close codes and reasons', () => {
  it('sends only codes a peer may send', () => {
    expect([1000, 1001, 1011, 1014, 3000, 4999].every(sendableCloseCode)).toBe(true);
    expect([999, 1004, 1005, 1006, 1015, 1016, 2999, 5000].some(sendableCloseCode)).toBe(false);
  });

  it('cuts a reason to 123 bytes at a character boundary', () => {
    expect(closeReason('bye')).toBe('bye');
    const cut = closeReason('é'.repeat(100));
    expect(Buffer.byteLength(cut)).toBe(122);
    expect(cut).toBe('é'.repeat(61));
  });
});

describe('realtimeUrl', () => {
  it.each([
    ['http://127.0.0.1:9/v1', '?model=m', 'ws://127.0.0.1:9/v1/realtime?model=m'],
    ['https://api.openai.com/v1/', '', 'wss://api.openai.com/v1/realtime'],
    ['https://example.com/openai/v1?x=1', '?model=m', 'wss://example.com/openai/v1/realtime?model=m'],
  ])('%s', (base, search, url) => {
    expect(realtimeUrl(base, search)).toBe(url);
  });
});
