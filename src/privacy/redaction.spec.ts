import { describe, expect, it } from 'vitest';
import { findPersonalData, Redactor } from './redaction';

const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';

/** [text, what it must become] */
const POSITIVES: [string, string, string][] = [
  // e-mail addresses
  ['email', 'write to alice@example.com today', 'write to [EMAIL_1] today'],
  ['email', 'Bob.Smith+billing@mail.example.co.uk.', '[EMAIL_1].'],
  ['email', '<first_last-99@sub.domain.io>', '<[EMAIL_1]>'],
  ['email', 'mailto:o\'brien@example.org, thanks', "mailto:[EMAIL_1], thanks"],
  ['email', 'josé.müller@bücher.de', '[EMAIL_1]'],
  ['email', 'upload alice@example.com.txt and bob@mail.example.org.pdf', 'upload [EMAIL_1].txt and [EMAIL_2].pdf'],
  // phone numbers, international formats and the default country's
  ['phone', 'call +44 20 7946 0958 now', 'call [PHONE_1] now'],
  ['phone', 'US: (415) 555-2671', 'US: [PHONE_1]'],
  ['phone', 'Tel. +49 30 901820', 'Tel. [PHONE_1]'],
  ['phone', 'Paris +33 1 42 68 53 00', 'Paris [PHONE_1]'],
  ['phone', 'mobile +91 98765 43210', 'mobile [PHONE_1]'],
  ['phone', '+1-202-555-0173', '[PHONE_1]'],
  ['phone', 'Tokyo +81 3-3224-9999', 'Tokyo [PHONE_1]'],
  ['phone', 'me (+44 20 7946 0958) or (415) 555-2671', 'me ([PHONE_1]) or [PHONE_2]'],
  // payment cards (Luhn-valid, with a network's prefix), plain, spaced, dashed
  ['card', 'Visa 4111 1111 1111 1111', 'Visa [CARD_1]'],
  ['card', 'visa:4012888888881881', 'visa:[CARD_1]'],
  ['card', 'MC 5555-5555-5555-4444 exp 12/27', 'MC [CARD_1] exp 12/27'],
  ['card', 'MC2 2223003122003222', 'MC2 [CARD_1]'],
  ['card', 'Amex 3782 822463 10005', 'Amex [CARD_1]'],
  ['card', 'Amex 371449635398431.', 'Amex [CARD_1].'],
  ['card', 'Discover 6011 1111 1111 1117', 'Discover [CARD_1]'],
  // IBANs of several countries, compact and grouped
  ['iban', 'IBAN DE89 3704 0044 0532 0130 00 please', 'IBAN [IBAN_1] please'],
  ['iban', 'GB82 WEST 1234 5698 7654 32', '[IBAN_1]'],
  ['iban', 'FR14 2004 1010 0505 0001 3M02 606', '[IBAN_1]'],
  ['iban', 'to NL91ABNA0417164300.', 'to [IBAN_1].'],
  ['iban', 'ES9121000418450200051332', '[IBAN_1]'],
  ['iban', 'CH93 0076 2011 6238 5295 7', '[IBAN_1]'],
  ['iban', 'BE68539007547034', '[IBAN_1]'],
  // IP addresses
  ['ip', 'from 192.168.1.20.', 'from [IP_1].'],
  ['ip', 'host 8.8.8.8:53', 'host [IP_1]:53'],
  ['ip', 'v6 2001:db8:85a3::8a2e:370:7334 here', 'v6 [IP_1] here'],
  ['ip', 'link fe80::1%eth0', 'link [IP_1]'],
  ['ip', '::ffff:10.0.0.1', '[IP_1]'],
  ['ip', '2001:0db8:0000:0000:0000:ff00:0042:8329', '[IP_1]'],
  // a bare dotted quad cannot be told from an address: replaced, erring on the side of privacy (`v1.2.3.4` survives)
  ['ip', 'build 1.2.3.4', 'build [IP_1]'],
  // secrets shaped like keys, and JWTs
  ['secret', 'key sk-abcdefghijklmnopqrstuvwxyz012345', 'key [SECRET_1]'],
  ['secret', 'OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz_12-34567890abcdef', 'OPENAI_API_KEY=[SECRET_1]'],
  ['secret', '"sk-svcacct-AAAAbbbbCCCCddddEEEEffff0000"', '"[SECRET_1]"'],
  ['secret', `Authorization: Bearer ${JWT}`, 'Authorization: Bearer [SECRET_1]'],
  ['secret', 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8', '[SECRET_1]'],
  ['secret', 'AKIAIOSFODNN7EXAMPLE', '[SECRET_1]'],
  ['secret', 'stripe sk_live_51Habcdefghijklmnop', 'stripe [SECRET_1]'],
  ['secret', '-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----', '[SECRET_1]'],
];

/** look-alikes that must survive unchanged */
const NEGATIVES: string[] = [
  'Order #100234987 shipped',
  'order ORD-2024-0005512',
  'invoice 2024-000123-77',
  'card 4111 1111 1111 1112 fails the Luhn check',
  '4012888888881882',
  '1234 5678 9012 3456',
  'timestamp 2024-05-17T12:30:45.123Z',
  'epoch 1717171717171 and 1717171717',
  'at 12:30:45 on 17/05/2024',
  'dates 2024-05-17, 05/17/2024, 17.05.2024',
  'uuid 550e8400-e29b-41d4-a716-446655440000',
  'req_0b9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d',
  'version v1.2.3.4 and 1.2.3 and 1.2.3.4.5 and 4.0.30319.42000 and 1.2.3-beta.4',
  'prices $1,299.99, €4.111,00 and EUR 1.234.567,89',
  'total 12345678.90',
  'IBAN DE89 3704 0044 0532 0130 01 has a wrong checksum',
  'GB82WEST12345698765433',
  'ISBN 978-3-16-148410-0',
  'model gpt-4o-2024-08-06',
  'std::vector and foo::bar and a::b',
  'root@localhost',
  'sk-short',
  'task-abcdefghijklmnopqrstuvwxyz012345',
  'HRESULT 0x80070005',
  'ratio 3:2 and 10:30',
  'the @handle and user@ and @example.com',
];

describe('redaction corpus', () => {
  for (const [kind, text, expected] of POSITIVES) {
    it(`${kind}: ${text.slice(0, 40)}`, () => {
      expect(new Redactor().text(text)).toBe(expected);
    });
  }

  for (const text of NEGATIVES) {
    it(`survives: ${text}`, () => {
      expect(findPersonalData(text)).toEqual([]);
      expect(new Redactor().text(text)).toBe(text);
    });
  }
});

describe('placeholders', () => {
  it('are stable within one exchange: the same value (written differently) gets the same placeholder', () => {
    const r = new Redactor();
    expect(r.text('alice@example.com, bob@example.com, Alice@Example.com')).toBe('[EMAIL_1], [EMAIL_2], [EMAIL_1]');
    expect(r.text('+1 415-555-2671 or (415) 555-2671')).toBe('[PHONE_1] or [PHONE_1]');
    expect(r.text('4111-1111-1111-1111 = 4111111111111111; bob@example.com')).toBe('[CARD_1] = [CARD_1]; [EMAIL_2]');
    // a new exchange starts over
    expect(new Redactor().text('bob@example.com')).toBe('[EMAIL_1]');
  });

  it('several kinds in one text', () => {
    const r = new Redactor();
    expect(r.text('Mail jo@x.io from 10.1.2.3, card 5555555555554444, key sk-proj-abcdefghijklmnopqrstuvwx')).toBe(
      'Mail [EMAIL_1] from [IP_1], card [CARD_1], key [SECRET_1]',
    );
  });

  it('JSON values: strings redacted; keys, numbers and the shape untouched; unchanged parts shared', () => {
    const r = new Redactor();
    const untouched = { n: 1 };
    const v = {
      'alice@example.com': 'alice@example.com',
      card: 4111111111111111,
      list: ['ok', 'call +44 20 7946 0958', untouched],
      nested: { deep: [{ t: 'ip 8.8.4.4' }] },
      none: null,
      yes: true,
    };
    const out = r.value(v) as typeof v;
    expect(out).toEqual({
      'alice@example.com': '[EMAIL_1]',
      card: 4111111111111111,
      list: ['ok', 'call [PHONE_1]', { n: 1 }],
      nested: { deep: [{ t: 'ip [IP_1]' }] },
      none: null,
      yes: true,
    });
    expect(out.list[2]).toBe(untouched);
    expect(v.list[1]).toBe('call +44 20 7946 0958');
  });

  it('JSON text: unchanged text is returned as it is; changed text is re-serialized; broken JSON is redacted as text', () => {
    const r = new Redactor();
    const clean = '{ "a": 1,  "b": "hello" }';
    expect(r.jsonText(clean)).toBe(clean);
    expect(JSON.parse(r.jsonText('{"input":"I am bob@example.com","n":4111111111111111}'))).toEqual({ input: 'I am [EMAIL_1]', n: 4111111111111111 });
    expect(JSON.parse(r.jsonText('{"cut": "bob@example.com and mo'))).toBe('{"cut": "[EMAIL_1] and mo');
  });
});
