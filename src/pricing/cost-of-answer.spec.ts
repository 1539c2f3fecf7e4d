import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AppConfig, ConfigError } from '../config/app-config';
import { addUsage, AnswerUsage, usageOfAnswer } from './answer-usage';
import { PricingService } from './pricing.service';
import TABLE from './prices.json';

const pricing = (pricesFile?: string) => new PricingService(Object.assign(new AppConfig(), { pricesFile }));
const p = pricing();
const costOf = (route: string, request: unknown, response: unknown): number | null => {
  const usage = usageOfAnswer(route, request, response);
  expect(usage).not.toBeNull();
  return p.costOfAnswer(usage!);
};

const M = 1_000_000;

// Answers in the shapes of the OpenAI API reference, sized so each cost is a published figure
const embedding = (model: string, tokens: number) => ({ object: 'list', data: [{ object: 'embedding', embedding: [0.0023064255], index: 0 }], model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
const completion = (model: string, prompt: number, completionTokens: number) => ({
  id: 'cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7',
  object: 'text_completion',
  created: 1589478378,
  model,
  choices: [{ text: '\n\nThis is indeed a test', index: 0, logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens },
});
const transcript = (textIn: number, audioIn: number, out: number) => ({
  text: 'Imagine the wildest idea that you\'ve ever had…',
  usage: { type: 'tokens', input_tokens: textIn + audioIn, input_token_details: { text_tokens: textIn, audio_tokens: audioIn }, output_tokens: out, total_tokens: textIn + audioIn + out },
});
const gptImage = (textIn: number, imageIn: number, out: number, outputDetails?: object) => ({
  created: 1713833628,
  data: [{ b64_json: 'iVBORw0KGgo…' }],
  background: 'opaque',
  output_format: 'png',
  size: '1024x1024',
  quality: 'high',
  usage: { total_tokens: textIn + imageIn + out, input_tokens: textIn + imageIn, output_tokens: out, input_tokens_details: { text_tokens: textIn, image_tokens: imageIn }, ...(outputDetails && { output_tokens_details: outputDetails }) },
});
const dallE = (n: number) => ({ created: 1589478378, data: Array.from({ length: n }, (_, i) => ({ url: `https://oaidalleapiprodscus.blob.core.windows.net/private/img-${i}.png` })) });
const response = (model: string, usage: { input: number; cached: number; output: number }, extra: object = {}) => ({
  id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b',
  object: 'response',
  created_at: 1741476542,
  status: 'completed',
  model,
  output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'In a peaceful grove…', annotations: [] }] }],
  service_tier: 'default',
  usage: {
    input_tokens: usage.input,
    input_tokens_details: { cached_tokens: usage.cached },
    output_tokens: usage.output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.input + usage.output,
  },
  ...extra,
});
interface RealtimeTokens {
  text?: number;
  audio?: number;
  image?: number;
  cachedText?: number;
  cachedAudio?: number;
  cachedImage?: number;
  textOut?: number;
  audioOut?: number;
}
const responseDone = (t: RealtimeTokens) => {
  const [text, audio, image, cachedText, cachedAudio, cachedImage, textOut, audioOut] = [t.text, t.audio, t.image, t.cachedText, t.cachedAudio, t.cachedImage, t.textOut, t.audioOut].map((n) => n ?? 0);
  const input = text + audio + image;
  return {
    type: 'response.done',
    event_id: 'event_CCXHxcMy86rrKhBLDdqCh',
    response: {
      object: 'realtime.response',
      id: 'resp_CCXHw0UJld10EzIUXQCNh',
      status: 'completed',
      output: [],
      usage: {
        total_tokens: input + textOut + audioOut,
        input_tokens: input,
        output_tokens: textOut + audioOut,
        input_token_details: {
          text_tokens: text,
          audio_tokens: audio,
          image_tokens: image,
          cached_tokens: cachedText + cachedAudio + cachedImage,
          cached_tokens_details: { text_tokens: cachedText, audio_tokens: cachedAudio, image_tokens: cachedImage },
        },
        output_token_details: { text_tokens: textOut, audio_tokens: audioOut },
      },
    },
  };
};

describe('the price table', () => {
  it('says when and where its prices were taken', () => {
    expect(TABLE.$source.taken).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(TABLE.$source.from).toContain('https://developers.openai.com/api/docs/pricing');
  });
});

describe('PricingService.costOfAnswer at the published figures', () => {
  const PUBLISHED: [string, string, unknown, unknown, number][] = [
    ['text-embedding-3-small: $0.02 / 1M tokens', '/v1/embeddings', { model: 'text-embedding-3-small' }, embedding('text-embedding-3-small', M), 0.02],
    ['text-embedding-3-large: $0.13 / 1M tokens', '/v1/embeddings', { model: 'text-embedding-3-large' }, embedding('text-embedding-3-large', M), 0.13],
    ['text-embedding-ada-002: $0.10 / 1M tokens', '/v1/embeddings', { model: 'text-embedding-ada-002' }, embedding('text-embedding-ada-002-v2', M), 0.1],
    ['gpt-3.5-turbo-instruct: $1.50 in, $2 out', '/v1/completions', { model: 'gpt-3.5-turbo-instruct' }, completion('gpt-3.5-turbo-instruct', M, M), 3.5],
    ['davinci-002: $2 in, $2 out', '/v1/completions', { model: 'davinci-002' }, completion('davinci-002', M, M), 4],
    ['babbage-002: $0.40 in, $0.40 out', '/v1/completions', { model: 'babbage-002' }, completion('babbage-002', M, M), 0.8],
    ['whisper-1: $0.006 / minute (10 minutes)', '/v1/audio/transcriptions', { model: 'whisper-1' }, { text: '…', usage: { type: 'duration', seconds: 600 } }, 0.06],
    ['gpt-4o-transcribe: $6 / 1M audio tokens in', '/v1/audio/transcriptions', { model: 'gpt-4o-transcribe' }, transcript(0, M, 0), 6],
    ['gpt-4o-transcribe: $2.50 text in, $10 out', '/v1/audio/transcriptions', { model: 'gpt-4o-transcribe' }, transcript(M, 0, M), 12.5],
    ['gpt-4o-mini-transcribe: $3 audio in, $1.25 text in, $5 out', '/v1/audio/transcriptions', { model: 'gpt-4o-mini-transcribe' }, transcript(M, M, M), 9.25],
    ['tts-1: $15 / 1M characters', '/v1/audio/speech', { model: 'tts-1', input: 'a'.repeat(M), voice: 'alloy' }, null, 15],
    ['tts-1-hd: $30 / 1M characters', '/v1/audio/speech', { model: 'tts-1-hd', input: 'a'.repeat(M), voice: 'alloy' }, null, 30],
    ['gpt-4o-mini-tts: $0.60 text in, $12 audio out', '/v1/audio/speech', { model: 'gpt-4o-mini-tts', input: 'Hi' }, { type: 'speech.audio.done', usage: { input_tokens: M, output_tokens: M, total_tokens: 2 * M } }, 12.6],
    ['gpt-image-1: $5 text in, $10 image in, $40 image out', '/v1/images/edits', { model: 'gpt-image-1' }, gptImage(M, M, M), 55],
    ['gpt-image-1-mini: $2 text in, $2.50 image in, $8 image out', '/v1/images/generations', { model: 'gpt-image-1-mini' }, gptImage(M, M, M), 12.5],
    ['dall-e-2 256x256: $0.016', '/v1/images/generations', { model: 'dall-e-2', size: '256x256' }, dallE(1), 0.016],
    ['dall-e-2 512x512 ×2: $0.018 each', '/v1/images/generations', { model: 'dall-e-2', size: '512x512', n: 2 }, dallE(2), 0.036],
    ['dall-e-2 variation 1024x1024: $0.02', '/v1/images/variations', {}, dallE(1), 0.02],
    ['dall-e-3 standard 1024x1024 (the defaults): $0.04', '/v1/images/generations', { model: 'dall-e-3', prompt: 'otter' }, dallE(1), 0.04],
    ['dall-e-3 standard 1792x1024: $0.08', '/v1/images/generations', { model: 'dall-e-3', size: '1792x1024' }, dallE(1), 0.08],
    ['dall-e-3 hd 1024x1024: $0.08', '/v1/images/generations', { model: 'dall-e-3', quality: 'hd' }, dallE(1), 0.08],
    ['dall-e-3 hd 1024x1792: $0.12', '/v1/images/generations', { model: 'dall-e-3', quality: 'hd', size: '1024x1792' }, dallE(1), 0.12],
    ['omni-moderation: free', '/v1/moderations', { input: 'text' }, { id: 'modr-1', model: 'omni-moderation-2024-09-26', results: [{ flagged: false }] }, 0],
    ['text-moderation-latest: free', '/v1/moderations', { model: 'text-moderation-latest', input: 'text' }, { id: 'modr-2', model: 'text-moderation-007', results: [] }, 0],
    ['gpt-realtime: $32 / 1M audio tokens in', '/v1/realtime', { model: 'gpt-realtime' }, responseDone({ audio: M }), 32],
    ['gpt-realtime: $64 / 1M audio tokens out', '/v1/realtime', { model: 'gpt-realtime-2025-08-28' }, responseDone({ audioOut: M }), 64],
    ['gpt-realtime: $0.40 / 1M cached audio tokens', '/v1/realtime', { model: 'gpt-realtime' }, responseDone({ audio: M, cachedAudio: M }), 0.4],
    ['gpt-realtime: $4 text in, $0.40 cached, $16 out', '/v1/realtime', { model: 'gpt-realtime' }, responseDone({ text: 2 * M, cachedText: M, textOut: M }), 20.4],
    ['gpt-realtime: $5 image in, $0.50 cached', '/v1/realtime', { model: 'gpt-realtime' }, responseDone({ image: 2 * M, cachedImage: M }), 5.5],
    ['gpt-realtime-mini: $10 audio in, $20 audio out', '/v1/realtime', { model: 'gpt-realtime-mini' }, responseDone({ audio: M, audioOut: M }), 30],
    ['gpt-4o-realtime-preview: $40 audio in, $80 audio out', '/v1/realtime', { model: 'gpt-4o-realtime-preview-2024-12-17' }, responseDone({ audio: M, audioOut: M }), 120],
    ['gpt-4o-mini-realtime-preview: $0.60 text in, $2.40 out', '/v1/realtime', { model: 'gpt-4o-mini-realtime-preview' }, responseDone({ text: M, textOut: M }), 3],
  ];

  it.each(PUBLISHED)('%s', (_, route, request, answer, usd) => {
    expect(costOf(route, request, answer)).toBe(usd);
  });

  it('chat with audio: gpt-audio at $2.50 / $10 text and $32 / $64 audio', () => {
    const chat = {
      id: 'chatcmpl-audio',
      object: 'chat.completion',
      created: 1741569952,
      model: 'gpt-audio-2025-08-28',
      choices: [{ index: 0, message: { role: 'assistant', content: null, audio: { id: 'audio_1', data: 'UklGR…', expires_at: 1741573552, transcript: 'Hello!' } }, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: 100,
        completion_tokens: 200,
        total_tokens: 300,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 80 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 150, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      },
      service_tier: 'default',
    };
    // 20 text in, 80 audio in, 50 text out, 150 audio out
    expect(costOf('/v1/chat/completions', { model: 'gpt-audio' }, chat)).toBe((20 * 2.5 + 80 * 32 + 50 * 10 + 150 * 64) / M);
    // audio tokens on a model the table prices by text only: unknown
    expect(costOf('/v1/chat/completions', { model: 'gpt-4.1' }, { ...chat, model: 'gpt-4.1' })).toBeNull();
    // cached tokens whose kind is not reported, where text and audio differ in price: unknown
    const cachedAudio = { ...chat, usage: { ...chat.usage, prompt_tokens_details: { cached_tokens: 40, audio_tokens: 80 } } };
    expect(costOf('/v1/chat/completions', { model: 'gpt-audio' }, cachedAudio)).toBeNull();
  });

  it('gpt-image-1 at its token prices gives the per-image figures the pricing page shows for 1024x1024', () => {
    // 272, 1056 and 4160 image tokens out (low, medium, high): $0.011, $0.042, $0.167 per image
    expect(costOf('/v1/images/generations', { model: 'gpt-image-1' }, gptImage(0, 0, 272))).toBe(0.01088);
    expect(costOf('/v1/images/generations', { model: 'gpt-image-1' }, gptImage(0, 0, 1056))).toBe(0.04224);
    expect(costOf('/v1/images/generations', { model: 'gpt-image-1' }, gptImage(20, 0, 4160))).toBe(0.1665);
    // text tokens out have no price for gpt-image-1
    expect(costOf('/v1/images/generations', { model: 'gpt-image-1' }, gptImage(20, 0, 4200, { image_tokens: 4160, text_tokens: 40 }))).toBeNull();
  });

  it('unknown models are null in every family', () => {
    expect(costOf('/v1/chat/completions', { model: 'my-local-llama' }, { ...completion('my-local-llama', 10, 10), object: 'chat.completion' })).toBeNull();
    expect(costOf('/v1/embeddings', {}, embedding('text-embedding-4', M))).toBeNull();
    expect(costOf('/v1/audio/transcriptions', { model: 'whisper-2' }, { text: '…', usage: { type: 'duration', seconds: 60 } })).toBeNull();
    expect(costOf('/v1/audio/speech', { model: 'tts-2', input: 'Hello' }, null)).toBeNull();
    expect(costOf('/v1/images/generations', { model: 'dall-e-4' }, dallE(1))).toBeNull();
    expect(costOf('/v1/realtime', { model: 'my-realtime' }, responseDone({ audio: 10 }))).toBeNull();
    expect(costOf('/v1/moderations', { model: 'my-moderation' }, { id: 'modr-3', results: [] })).toBeNull();
    // a GPT image answer without a model names none
    expect(costOf('/v1/images/generations', { prompt: 'otter' }, gptImage(10, 0, 272))).toBeNull();
  });

  it('is null when a part the model is priced by is missing or has no price', () => {
    // a size or quality dall-e-3 has no price for
    expect(costOf('/v1/images/generations', { model: 'dall-e-3', size: '512x512' }, dallE(1))).toBeNull();
    expect(costOf('/v1/images/generations', { model: 'dall-e-2', quality: 'hd' }, dallE(1))).toBeNull();
    // a streamed speech answer is audio: gpt-4o-mini-tts's tokens are unknown, tts-1 without input has no characters
    expect(costOf('/v1/audio/speech', { model: 'gpt-4o-mini-tts', input: 'Hello' }, null)).toBeNull();
    expect(costOf('/v1/audio/speech', { model: 'tts-1', input: 'Hello', voice: 'alloy' }, null)).toBe(5 * 15 / M);
    expect(p.costOfAnswer({ model: 'tts-1', input: null, output: null, total: null, cached: null, reasoning: null })).toBeNull();
    // whisper-1 is priced by the minute: tokens alone do not price it
    expect(p.costOfAnswer({ model: 'whisper-1', input: 100, output: 20, total: 120, cached: null, reasoning: null })).toBeNull();
    // realtime cached tokens without their split, while audio is in: unknown
    const unsplit = responseDone({ text: 100, audio: 100, cachedText: 50 });
    delete (unsplit.response.usage.input_token_details as Partial<typeof unsplit.response.usage.input_token_details>).cached_tokens_details;
    expect(costOf('/v1/realtime', { model: 'gpt-realtime' }, unsplit)).toBeNull();
  });
});

describe('service tiers', () => {
  // 1M in of which 200k cached, 1M out
  const gpt5 = (tier: string) => response('gpt-5-2025-08-07', { input: M, cached: 200_000, output: M }, { service_tier: tier });

  it('default and auto are the standard price; flex and priority their own published prices', () => {
    const standard = 0.8 * 1.25 + 0.2 * 0.125 + 10;
    expect(costOf('/v1/responses', { model: 'gpt-5' }, gpt5('default'))).toBe(standard);
    expect(costOf('/v1/responses', { model: 'gpt-5' }, gpt5('auto'))).toBe(standard);
    expect(costOf('/v1/responses', { model: 'gpt-5', service_tier: 'flex' }, gpt5('flex'))).toBe(0.8 * 0.625 + 0.2 * 0.0625 + 5);
    expect(costOf('/v1/responses', { model: 'gpt-5', service_tier: 'priority' }, gpt5('priority'))).toBe(0.8 * 2.5 + 0.2 * 0.25 + 20);
    // a snapshot takes its family's tiers; gpt-4o-2024-05-13 has its own
    expect(costOf('/v1/responses', {}, response('gpt-4o-2024-08-06', { input: M, cached: 0, output: M }, { service_tier: 'priority' }))).toBe(4.25 + 17);
    expect(costOf('/v1/responses', {}, response('gpt-4o-2024-05-13', { input: M, cached: 0, output: M }, { service_tier: 'priority' }))).toBe(8.75 + 26.25);
    // flex on chat completions: o4-mini, half its list price
    const chat = { ...completion('o4-mini-2025-04-16', M, M), object: 'chat.completion', service_tier: 'flex' };
    chat.usage = { ...chat.usage, prompt_tokens_details: { cached_tokens: 500_000 } } as typeof chat.usage;
    expect(costOf('/v1/chat/completions', { model: 'o4-mini', service_tier: 'flex' }, chat)).toBe(0.5 * 0.55 + 0.5 * 0.1375 + 2.2);
  });

  it('a tier the table does not know for that model is null', () => {
    expect(costOf('/v1/responses', { model: 'gpt-5' }, gpt5('scale'))).toBeNull();
    expect(costOf('/v1/responses', {}, response('gpt-4.1', { input: 10, cached: 0, output: 10 }, { service_tier: 'flex' }))).toBeNull();
    expect(costOf('/v1/responses', {}, response('gpt-4o-mini', { input: 10, cached: 0, output: 10 }, { service_tier: 'priority' }))).toBeNull();
  });
});

describe('built-in tool calls', () => {
  it('adds $10 per 1,000 web searches and $2.50 per 1,000 file searches to the tokens', () => {
    const tools = [
      { type: 'web_search_call', id: 'ws_1', status: 'completed' },
      { type: 'web_search_call', id: 'ws_2', status: 'completed' },
      { type: 'file_search_call', id: 'fs_1', status: 'completed', queries: ['What is deep research?'], results: null },
    ];
    const plain = response('gpt-4.1-2025-04-14', { input: 328, cached: 0, output: 356 });
    const searched = { ...plain, output: [...tools, ...plain.output] };
    const tokens = (328 * 2 + 356 * 8) / M;
    expect(costOf('/v1/responses', { model: 'gpt-4.1' }, plain)).toBe(tokens);
    expect(costOf('/v1/responses', { model: 'gpt-4.1' }, searched)).toBe(p.roundUsd(tokens + 2 * 0.01 + 0.0025));
  });
});

describe('the Batch API', () => {
  const batch = (model: string, input: number, output: number) => ({
    id: 'batch_abc123',
    object: 'batch',
    endpoint: '/v1/chat/completions',
    model,
    errors: null,
    input_file_id: 'file-abc123',
    completion_window: '24h',
    status: 'completed',
    output_file_id: 'file-cvaTdG',
    error_file_id: 'file-HOWS94',
    created_at: 1711471533,
    request_counts: { total: 100, completed: 95, failed: 5 },
    usage: { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, output_tokens_details: { reasoning_tokens: 300 }, total_tokens: input + output },
    metadata: null,
  });

  it('halves the price of the whole job', () => {
    expect(costOf('/v1/batches/{batch_id}', null, batch('gpt-5-2025-08-07', 1500, 500))).toBe((1500 * 1.25 + 500 * 10) / M / 2);
    expect(costOf('/v1/batches/{batch_id}', null, { ...batch('text-embedding-3-small', M, 0), endpoint: '/v1/embeddings' })).toBe(0.01);
    // a batch names no tier: one that says otherwise is not priced
    expect(p.costOfAnswer({ ...usageOfAnswer('/v1/batches/{batch_id}', null, batch('gpt-5', M, M))!, serviceTier: 'flex' })).toBeNull();
  });
});

describe('realtime sessions', () => {
  it('cost the sum of their response.done events', () => {
    const events = [
      responseDone({ text: 119, audio: 13, cachedText: 64, textOut: 30, audioOut: 91 }),
      responseDone({ text: 150, audio: 50, cachedText: 80, cachedAudio: 20, textOut: 20, audioOut: 80 }),
    ];
    const [first, second] = events.map((e) => usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, e)!);
    // (119 - 64) × $4 + 64 × $0.40 + 13 × $32 + 30 × $16 + 91 × $64, per million
    expect(p.costOfAnswer(first)).toBe(0.0069656);
    // 70 × $4 + 80 × $0.40 + 30 × $32 + 20 × $0.40 + 20 × $16 + 80 × $64, per million
    expect(p.costOfAnswer(second)).toBe(0.00672);
    const session: AnswerUsage = events.map((e) => usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, e)!).reduce(addUsage);
    expect(p.costOfAnswer(session)).toBe(0.0136856);
  });
});

describe('PricingService.cost with extras (the responses and chat paths)', () => {
  it('prices the tier, tool calls and the Batch API', () => {
    const tokens = { input: M, cached: 200_000, output: M };
    const standard = 0.8 * 1.25 + 0.2 * 0.125 + 10;
    expect(p.cost('gpt-5', tokens)).toBe(standard);
    expect(p.cost('gpt-5', tokens, { serviceTier: 'default' })).toBe(standard);
    expect(p.cost('gpt-5', tokens, { serviceTier: null })).toBe(standard);
    expect(p.cost('gpt-5', tokens, { serviceTier: 'flex' })).toBe(standard / 2);
    expect(p.cost('gpt-5', tokens, { serviceTier: 'priority' })).toBe(0.8 * 2.5 + 0.2 * 0.25 + 20);
    expect(p.cost('gpt-5', tokens, { serviceTier: 'scale' })).toBeNull();
    expect(p.cost('gpt-5', tokens, { webSearchCalls: 1000, fileSearchCalls: 1000 })).toBe(standard + 10 + 2.5);
    expect(p.cost('gpt-5', tokens, { batch: true })).toBe(standard / 2);
    expect(p.cost('gpt-5', { input: null, output: null }, { webSearchCalls: 3 })).toBeNull();
  });

  it('prices models billed by input tokens alone, and not those billed by other units', () => {
    expect(p.cost('text-embedding-3-small', { input: M, output: 0 })).toBe(0.02);
    expect(p.priceOf('text-embedding-3-small')).toBeNull();
    expect(p.priceOf('whisper-1')).toBeNull();
    expect(p.cost('whisper-1', { input: 100, output: 100 })).toBeNull();
    expect(p.cost('dall-e-3', { input: 100, output: 100 })).toBeNull();
  });
});

describe('PRICES_FILE', () => {
  const file = (table: object) => {
    const path = join(mkdtempSync(join(tmpdir(), 'prices-')), 'prices.json');
    writeFileSync(path, JSON.stringify(table));
    return path;
  };

  it('overrides the table settings and adds models of every kind', () => {
    const custom = pricing(
      file({
        $batch_factor: 0.6,
        $tool_calls_per_1k: { web_search: 25 },
        'my-image-model': { per_image: { Standard: { '1024X1024': 0.5 } } },
        'my-moderation': { free: true },
        'my-tiered': { input: 1, output: 2, tiers: { flex: { input: 0.5, output: 1 } } },
      }),
    );
    expect(custom.cost('gpt-5', { input: M, output: 0 }, { batch: true })).toBe(1.25 * 0.6);
    expect(custom.cost('gpt-5', { input: 0, output: 0 }, { webSearchCalls: 1000, fileSearchCalls: 1000 })).toBe(25 + 2.5);
    const images: AnswerUsage = { model: 'my-image-model', input: null, output: null, total: null, cached: null, reasoning: null, images: { count: 2, size: '1024x1024', quality: 'standard' } };
    expect(custom.costOfAnswer(images)).toBe(1);
    expect(custom.costOfAnswer({ ...images, model: 'my-moderation' })).toBe(0);
    expect(custom.cost('my-tiered', { input: M, cached: M, output: M }, { serviceTier: 'flex' })).toBe(1.5);
  });

  it('rejects settings and prices it cannot read', () => {
    expect(() => pricing(file({ $batch_discount: 0.5 }))).toThrow(ConfigError);
    expect(() => pricing(file({ $batch_factor: 2 }))).toThrow(ConfigError);
    expect(() => pricing(file({ 'my-model': {} }))).toThrow(ConfigError);
    expect(() => pricing(file({ 'my-model': { input: -1, output: 1 } }))).toThrow(ConfigError);
    expect(() => pricing(file({ 'my-model': { input: 1, ouput: 1 } }))).toThrow(/unknown price "ouput"/);
    expect(() => pricing(file({ 'my-model': { per_image: { standard: { '1024x1024': 'cheap' } } } }))).toThrow(ConfigError);
  });
});
