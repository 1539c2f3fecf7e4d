import { describe, expect, it } from 'vitest';
import { safetyIdentifierFor, safetyIdentifierOf, withoutPersona, withPersona } from './proxy-body';

const SECRET = 'a-server-secret-of-at-least-32-bytes-0123';
const ID = safetyIdentifierOf(SECRET, 'org-1', 'user-1');
const send = (text: string, askUsage: boolean, safetyId: string | null) => {
  const out = withoutPersona(JSON.parse(text), Buffer.from(text), askUsage, safetyId);
  return typeof out === 'string' ? out : out.toString('utf8');
};

describe('safety_identifier in the proxied body', () => {
  it('is 32 hex characters, a function of the secret, organization and user', () => {
    expect(ID).toMatch(/^[0-9a-f]{32}$/);
    expect(safetyIdentifierOf(SECRET, 'org-1', 'user-1')).toBe(ID);
    expect(safetyIdentifierOf(SECRET, 'org-2', 'user-1')).not.toBe(ID);
    expect(safetyIdentifierOf(SECRET, 'org-1', 'user-2')).not.toBe(ID);
    // the separator keeps (org, user) pairs apart
    expect(safetyIdentifierOf(SECRET, 'org-1\nuser', '1')).not.toBe(safetyIdentifierOf(SECRET, 'org-1', 'user\n1'));
    expect(safetyIdentifierOf(`${SECRET}x`, 'org-1', 'user-1')).not.toBe(ID);
  });

  it('is added only when the organization has it on', () => {
    const acting = { orgId: 'org-1', externalUserId: 'user-1' };
    const privacy = { capture: 'full' as const, contentRetentionDays: null, retentionDays: null };
    expect(safetyIdentifierFor({ ...acting, privacy: { ...privacy, safetyIdentifier: true } }, SECRET)).toBe(ID);
    expect(safetyIdentifierFor({ ...acting, privacy: { ...privacy, safetyIdentifier: false } }, SECRET)).toBeNull();
  });

  it('is inserted after the opening brace, the client bytes kept, alone or with the stream usage', () => {
    const raw = ' {"model":"m" , "input":"x"}';
    expect(withoutPersona(JSON.parse(raw), Buffer.from(raw), false, null)).toEqual(Buffer.from(raw));
    expect(send(raw, false, ID)).toBe(` {"safety_identifier":"${ID}","model":"m" , "input":"x"}`);
    const chat = '{"model":"m","stream":true,"messages":[]}';
    expect(send(chat, true, ID)).toBe(`{"stream_options":{"include_usage":true},"safety_identifier":"${ID}",${chat.slice(1)}`);
    expect(JSON.parse(send('{}', false, ID))).toEqual({ safety_identifier: ID });
    expect(JSON.parse(send(' { } ', true, ID))).toEqual({ stream_options: { include_usage: true }, safety_identifier: ID });
  });

  it('leaves a client-sent one alone, even null, and joins a rewritten body', () => {
    const own = '{"model":"m","safety_identifier":"mine"}';
    expect(send(own, false, ID)).toBe(own);
    expect(JSON.parse(send('{"model":"m","safety_identifier":null}', false, ID)).safety_identifier).toBeNull();
    expect(JSON.parse(send('{"model":"m","persona_id":null}', false, ID))).toEqual({ model: 'm', safety_identifier: ID });
    expect(JSON.parse(send('{"model":"m","stream":true,"stream_options":{"include_usage":false}}', true, ID))).toMatchObject({
      stream_options: { include_usage: true },
      safety_identifier: ID,
    });
    expect(JSON.parse(withPersona('responses', { model: 'm', persona_id: 'p' }, 'Be brief.', false, ID))).toEqual({ model: 'm', instructions: 'Be brief.', safety_identifier: ID });
    expect(JSON.parse(withPersona('responses', { model: 'm', safety_identifier: 'mine' }, 'Be brief.', false, ID)).safety_identifier).toBe('mine');
  });
});
