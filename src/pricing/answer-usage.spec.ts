import { describe, expect, it } from 'vitest';
import type { TokenUsage } from '../exchanges/recorder/exchange-record';
import { addUsage, AnswerUsage, toolCallsOf, usageOfAnswer } from './answer-usage';

// Answers as the OpenAI API reference shows them (long fields shortened)

const CHAT = {
  id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
  object: 'chat.completion',
  created: 1741569952,
  model: 'gpt-4.1-2025-04-14',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I assist you today?', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
  usage: {
    prompt_tokens: 19,
    completion_tokens: 10,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  },
  service_tier: 'default',
};

const COMPLETION = {
  id: 'cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7',
  object: 'text_completion',
  created: 1589478378,
  model: 'gpt-3.5-turbo-instruct',
  system_fingerprint: 'fp_44709d6fcb',
  choices: [{ text: '\n\nThis is indeed a test', index: 0, logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
};

const RESPONSE_WITH_TOOLS = {
  id: 'resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654',
  object: 'response',
  created_at: 1741290958,
  status: 'completed',
  model: 'gpt-4.1-2025-04-14',
  output: [
    { type: 'web_search_call', id: 'ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9609', status: 'completed' },
    { type: 'web_search_call', id: 'ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9610', status: 'completed' },
    { type: 'file_search_call', id: 'fs_67c09ccea8c48191ade9367e3ba71515', status: 'completed', queries: ['What is deep research?'], results: null },
    {
      type: 'message',
      id: 'msg_67c9fa077e288190af08fdffda2e34f20be649c1a5ff9609',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: 'As of today, March 9, 2025, one notable positive news story…', annotations: [] }],
    },
  ],
  service_tier: 'default',
  tools: [{ type: 'web_search' }, { type: 'file_search', vector_store_ids: ['vs_1234567890'] }],
  usage: { input_tokens: 328, input_tokens_details: { cached_tokens: 0 }, output_tokens: 356, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 684 },
};

const EMBEDDINGS = {
  object: 'list',
  data: [{ object: 'embedding', embedding: [0.0023064255, -0.009327292, -0.0028842222], index: 0 }],
  model: 'text-embedding-3-small',
  usage: { prompt_tokens: 8, total_tokens: 8 },
};

const MODERATION = {
  id: 'modr-0d9740456c391e43c445bf0f010940c7',
  model: 'omni-moderation-2024-09-26',
  results: [{ flagged: true, categories: { harassment: true, violence: true }, category_scores: { harassment: 0.8189693396524255, violence: 0.9869458685 } }],
};

const TRANSCRIPTION = {
  text: 'Imagine the wildest idea that you\'ve ever had, and you\'re curious about how it might scale to something that\'s a 100, a 1,000 times bigger.',
  usage: { type: 'tokens', input_tokens: 14, input_token_details: { text_tokens: 0, audio_tokens: 14 }, output_tokens: 45, total_tokens: 59 },
};

const WHISPER_VERBOSE = {
  task: 'transcribe',
  language: 'english',
  duration: 8.470000267028809,
  text: 'The beach was a popular spot on a hot summer day.',
  segments: [{ id: 0, seek: 0, start: 0, end: 3.319999933242798, text: ' The beach was a popular spot on a hot summer day.', tokens: [50364, 440, 7534], temperature: 0, avg_logprob: -0.2860786020755768, compression_ratio: 1.2363636493682861, no_speech_prob: 0.00985979475080967 }],
  usage: { type: 'duration', seconds: 9 },
};

const IMAGE_GPT = {
  created: 1713833628,
  data: [{ b64_json: 'iVBORw0KGgo…' }],
  background: 'transparent',
  output_format: 'png',
  size: '1024x1024',
  quality: 'high',
  usage: { total_tokens: 100, input_tokens: 50, output_tokens: 50, input_tokens_details: { text_tokens: 10, image_tokens: 40 } },
};

const IMAGE_DALLE = { created: 1589478378, data: [{ url: 'https://oaidalleapiprodscus.blob.core.windows.net/private/img-1.png', revised_prompt: 'A cute baby sea otter…' }] };

const BATCH = {
  id: 'batch_abc123',
  object: 'batch',
  endpoint: '/v1/chat/completions',
  model: 'gpt-5-2025-08-07',
  errors: null,
  input_file_id: 'file-abc123',
  completion_window: '24h',
  status: 'completed',
  output_file_id: 'file-cvaTdG',
  error_file_id: 'file-HOWS94',
  created_at: 1711471533,
  in_progress_at: 1711471538,
  expires_at: 1711557933,
  finalizing_at: 1711493133,
  completed_at: 1711493163,
  failed_at: null,
  expired_at: null,
  cancelling_at: null,
  cancelled_at: null,
  request_counts: { total: 100, completed: 95, failed: 5 },
  usage: { input_tokens: 1500, input_tokens_details: { cached_tokens: 0 }, output_tokens: 500, output_tokens_details: { reasoning_tokens: 300 }, total_tokens: 2000 },
  metadata: { customer_id: 'user_123456789', batch_description: 'Nightly eval job' },
};

const REALTIME_DONE = {
  type: 'response.done',
  event_id: 'event_CCXHxcMy86rrKhBLDdqCh',
  response: {
    object: 'realtime.response',
    id: 'resp_CCXHw0UJld10EzIUXQCNh',
    status: 'completed',
    status_details: null,
    output: [{ id: 'item_CCXHwGjjDUfOXbiySlK7i', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_audio', transcript: 'Loud and clear! I can hear you perfectly.' }] }],
    conversation_id: 'conv_CCXHsurMKcaVxIZvaCI5m',
    output_modalities: ['audio'],
    max_output_tokens: 'inf',
    audio: { output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' } },
    usage: {
      total_tokens: 253,
      input_tokens: 132,
      output_tokens: 121,
      input_token_details: { text_tokens: 119, audio_tokens: 13, image_tokens: 0, cached_tokens: 64, cached_tokens_details: { text_tokens: 64, audio_tokens: 0, image_tokens: 0 } },
      output_token_details: { text_tokens: 30, audio_tokens: 91 },
    },
    metadata: null,
  },
};

describe('usageOfAnswer', () => {
  it('chat and legacy completions: prompt and completion tokens, cached, reasoning, audio, the tier the answer names', () => {
    expect(usageOfAnswer('/v1/chat/completions', { model: 'gpt-4.1', messages: [] }, CHAT)).toEqual({
      model: 'gpt-4.1-2025-04-14',
      input: 19,
      output: 10,
      total: 29,
      cached: 0,
      reasoning: 0,
      audioInput: 0,
      audioOutput: 0,
      serviceTier: 'default',
    });
    expect(usageOfAnswer('/v1/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'Say this is a test' }, COMPLETION)).toEqual({
      model: 'gpt-3.5-turbo-instruct',
      input: 5,
      output: 7,
      total: 12,
      cached: null,
      reasoning: null,
    });
    // the tier asked for stands when the answer names none
    const { service_tier: _, ...untiered } = CHAT;
    expect(usageOfAnswer('/v1/chat/completions', { model: 'gpt-4.1', service_tier: 'flex' }, untiered)!.serviceTier).toBe('flex');
    // an error answer reports nothing to price
    expect(usageOfAnswer('/v1/chat/completions', { model: 'gpt-4.1' }, { error: { message: 'boom', type: 'server_error' } })).toBeNull();
  });

  it('responses (and their final stream event, compactions, retrieves): usage, tier and built-in tool calls', () => {
    const expected = { model: 'gpt-4.1-2025-04-14', input: 328, output: 356, total: 684, cached: 0, reasoning: 0, serviceTier: 'default', webSearchCalls: 2, fileSearchCalls: 1 };
    expect(usageOfAnswer('/v1/responses', { model: 'gpt-4.1' }, RESPONSE_WITH_TOOLS)).toEqual(expected);
    expect(usageOfAnswer('/v1/responses', { model: 'gpt-4.1' }, { type: 'response.completed', sequence_number: 9, response: RESPONSE_WITH_TOOLS })).toEqual(expected);
    expect(usageOfAnswer('/v1/responses/{response_id}', null, RESPONSE_WITH_TOOLS)).toEqual(expected);
    const compaction = {
      id: 'cmp_68b1f0c4a3a08190a2f3b0e3e4b56c31',
      object: 'response.compaction',
      created_at: 1756491972,
      output: [{ type: 'compaction', id: 'cmp_item_1', encrypted_content: 'gAAAAABo…' }],
      usage: { input_tokens: 12000, input_tokens_details: { cached_tokens: 8000 }, output_tokens: 900, output_tokens_details: { reasoning_tokens: 600 }, total_tokens: 12900 },
    };
    expect(usageOfAnswer('/v1/responses/compact', { model: 'gpt-5', input: [] }, compaction)).toEqual({
      model: 'gpt-5',
      input: 12000,
      output: 900,
      total: 12900,
      cached: 8000,
      reasoning: 600,
      webSearchCalls: 0,
      fileSearchCalls: 0,
    });
    // a background response still queued has no usage yet
    expect(usageOfAnswer('/v1/responses', { model: 'o3', background: true }, { id: 'resp_1', object: 'response', status: 'queued', model: 'o3-2025-04-16', output: [], usage: null })).toBeNull();
  });

  it('toolCallsOf counts web and file search calls of a Responses object', () => {
    expect(toolCallsOf(RESPONSE_WITH_TOOLS)).toEqual({ webSearchCalls: 2, fileSearchCalls: 1 });
    expect(toolCallsOf({ type: 'response.completed', response: RESPONSE_WITH_TOOLS })).toEqual({ webSearchCalls: 2, fileSearchCalls: 1 });
    expect(toolCallsOf({ object: 'response', output: [{ type: 'message', content: [] }] })).toEqual({ webSearchCalls: 0, fileSearchCalls: 0 });
    expect(toolCallsOf(null)).toEqual({ webSearchCalls: 0, fileSearchCalls: 0 });
  });

  it('embeddings: prompt tokens in, nothing out; moderation: only its model', () => {
    expect(usageOfAnswer('/v1/embeddings', { model: 'text-embedding-3-small', input: 'The food was delicious' }, EMBEDDINGS)).toEqual({
      model: 'text-embedding-3-small',
      input: 8,
      output: 0,
      total: 8,
      cached: null,
      reasoning: null,
    });
    expect(usageOfAnswer('/v1/moderations', { input: 'I want to kill them.' }, MODERATION)).toEqual({ model: 'omni-moderation-2024-09-26', input: null, output: null, total: null, cached: null, reasoning: null });
  });

  it('transcriptions: tokens with their audio part, or seconds of audio; the model comes from the form fields', () => {
    expect(usageOfAnswer('/v1/audio/transcriptions', { model: 'gpt-4o-transcribe' }, TRANSCRIPTION)).toEqual({
      model: 'gpt-4o-transcribe',
      input: 14,
      output: 45,
      total: 59,
      cached: null,
      reasoning: null,
      audioInput: 14,
    });
    expect(usageOfAnswer('/v1/audio/transcriptions', { model: 'whisper-1' }, WHISPER_VERBOSE)).toMatchObject({ model: 'whisper-1', audioSeconds: 9, input: null });
    // a verbose answer without usage still tells its duration
    const { usage: _, ...noUsage } = WHISPER_VERBOSE;
    expect(usageOfAnswer('/v1/audio/translations', { model: 'whisper-1' }, noUsage)!.audioSeconds).toBeCloseTo(8.47, 6);
    // a transcript asked for as text reports nothing
    expect(usageOfAnswer('/v1/audio/transcriptions', { model: 'whisper-1' }, null)).toBeNull();
    expect(usageOfAnswer('/v1/audio/translations', { model: 'whisper-1' }, { text: 'Hello, my name is Wolfgang.' })).toBeNull();
  });

  it('speech: characters of the input (code points), and the tokens of a streamed answer', () => {
    const request = { model: 'tts-1', input: 'The quick brown fox jumped over the lazy dog.', voice: 'alloy' };
    expect(usageOfAnswer('/v1/audio/speech', request, null)).toEqual({ model: 'tts-1', input: null, output: null, total: null, cached: null, reasoning: null, characters: 45 });
    expect(usageOfAnswer('/v1/audio/speech', { model: 'tts-1', input: 'héllo 👋' }, null)!.characters).toBe(7);
    const done = { type: 'speech.audio.done', usage: { input_tokens: 14, output_tokens: 101, total_tokens: 115 } };
    expect(usageOfAnswer('/v1/audio/speech', { model: 'gpt-4o-mini-tts', input: 'Hello', voice: 'coral', stream_format: 'sse' }, done)).toEqual({
      model: 'gpt-4o-mini-tts',
      input: 14,
      output: 101,
      total: 115,
      cached: null,
      reasoning: null,
      characters: 5,
      audioOutput: 101,
    });
  });

  it('images: GPT image tokens by kind; DALL·E images by count, size and quality (answer, request, then defaults)', () => {
    expect(usageOfAnswer('/v1/images/generations', { model: 'gpt-image-1', prompt: 'A cute baby sea otter' }, IMAGE_GPT)).toEqual({
      model: 'gpt-image-1',
      input: 50,
      output: 50,
      total: 100,
      cached: null,
      reasoning: null,
      imageInput: 40,
      imageOutput: 50,
      images: { count: 1, size: '1024x1024', quality: 'high' },
    });
    expect(usageOfAnswer('/v1/images/generations', { model: 'dall-e-3', prompt: 'otter', size: '1024x1792', quality: 'hd' }, IMAGE_DALLE)!.images).toEqual({ count: 1, size: '1024x1792', quality: 'hd' });
    expect(usageOfAnswer('/v1/images/generations', { model: 'dall-e-3', prompt: 'otter' }, IMAGE_DALLE)!.images).toEqual({ count: 1, size: '1024x1024', quality: 'standard' });
    // without a model the API uses dall-e-2, unless the answer has usage: then it was a GPT image model, unknown which
    expect(usageOfAnswer('/v1/images/generations', { prompt: 'otter', n: 2, size: '512x512' }, { created: 1, data: [{ url: 'a' }, { url: 'b' }] })).toMatchObject({
      model: 'dall-e-2',
      images: { count: 2, size: '512x512', quality: 'standard' },
    });
    expect(usageOfAnswer('/v1/images/generations', { prompt: 'otter' }, IMAGE_GPT)!.model).toBeNull();
    // multipart edits and variations: the form fields that are known
    expect(usageOfAnswer('/v1/images/edits', { model: 'gpt-image-1' }, IMAGE_GPT)).toMatchObject({ model: 'gpt-image-1', imageInput: 40, imageOutput: 50 });
    expect(usageOfAnswer('/v1/images/variations', { size: '256x256' }, IMAGE_DALLE)).toMatchObject({ model: 'dall-e-2', images: { count: 1, size: '256x256' } });
    // a streamed generation's final event is one image
    const completed = { type: 'image_generation.completed', b64_json: '…', created_at: 1620000000, size: '1024x1024', quality: 'high', background: 'transparent', output_format: 'png', usage: IMAGE_GPT.usage };
    expect(usageOfAnswer('/v1/images/generations', { model: 'gpt-image-1', stream: true }, completed)).toMatchObject({ images: { count: 1 }, imageOutput: 50 });
  });

  it('batches: the usage of the whole job, marked as run through the Batch API', () => {
    expect(usageOfAnswer('/v1/batches/{batch_id}', null, BATCH)).toEqual({ model: 'gpt-5-2025-08-07', input: 1500, output: 500, total: 2000, cached: 0, reasoning: 300, batch: true });
    expect(usageOfAnswer('/v1/batches/{id}/cancel', null, BATCH)!.batch).toBe(true);
    const { usage: _, ...running } = BATCH;
    expect(usageOfAnswer('/v1/batches/{batch_id}', null, { ...running, status: 'in_progress' })).toBeNull();
  });

  it('realtime: a response.done event split by text, audio and image, cached ones too', () => {
    expect(usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, REALTIME_DONE)).toEqual({
      model: 'gpt-realtime',
      input: 132,
      output: 121,
      total: 253,
      cached: 64,
      reasoning: null,
      audioInput: 13,
      imageInput: 0,
      cachedAudio: 0,
      cachedImage: 0,
      audioOutput: 91,
    });
    // the response itself, or its usage object, will do
    expect(usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, REALTIME_DONE.response)!.input).toBe(132);
    expect(usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, REALTIME_DONE.response.usage)!.audioOutput).toBe(91);
    expect(usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, { type: 'session.created', session: {} })).toBeNull();
  });

  it('routes that run no model, and routes it does not know, have no usage', () => {
    expect(usageOfAnswer('/v1/files/{file_id}', null, { id: 'file-abc123', object: 'file', bytes: 120000 })).toBeNull();
    expect(usageOfAnswer('/v1/models', null, { object: 'list', data: [] })).toBeNull();
  });

  it('its token columns are a TokenUsage', () => {
    const columns: TokenUsage = usageOfAnswer('/v1/chat/completions', {}, CHAT)!;
    expect([columns.input, columns.output, columns.total, columns.cached, columns.reasoning]).toEqual([19, 10, 29, 0, 0]);
  });
});

describe('addUsage', () => {
  const second: AnswerUsage = usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, {
    type: 'response.done',
    response: {
      object: 'realtime.response',
      usage: {
        total_tokens: 300,
        input_tokens: 200,
        output_tokens: 100,
        input_token_details: { text_tokens: 150, audio_tokens: 50, image_tokens: 0, cached_tokens: 100, cached_tokens_details: { text_tokens: 80, audio_tokens: 20, image_tokens: 0 } },
        output_token_details: { text_tokens: 20, audio_tokens: 80 },
      },
    },
  })!;

  it('sums a realtime session over its response.done events', () => {
    const first = usageOfAnswer('/v1/realtime', { model: 'gpt-realtime' }, REALTIME_DONE)!;
    expect(addUsage(first, second)).toEqual({
      model: 'gpt-realtime',
      input: 332,
      output: 221,
      total: 553,
      cached: 164,
      reasoning: null,
      audioInput: 63,
      imageInput: 0,
      cachedAudio: 20,
      cachedImage: 0,
      audioOutput: 171,
    });
  });

  it('keeps what only one side knows, and names no single model or tier when they differ', () => {
    const a: AnswerUsage = { model: 'gpt-4o', input: 10, output: null, total: null, cached: null, reasoning: null, serviceTier: 'default', webSearchCalls: 1 };
    const b: AnswerUsage = { model: 'gpt-4o', input: 5, output: 7, total: 12, cached: 2, reasoning: null, fileSearchCalls: 2 };
    expect(addUsage(a, b)).toEqual({ model: 'gpt-4o', input: 15, output: 7, total: 12, cached: 2, reasoning: null, serviceTier: 'default', webSearchCalls: 1, fileSearchCalls: 2 });
    expect(addUsage(a, { ...b, model: 'gpt-4o-mini' }).model).toBeNull();
    expect(addUsage(a, { ...b, serviceTier: 'flex' }).serviceTier).toBe('default+flex');
    const images = (size: string): AnswerUsage => ({ model: 'dall-e-2', input: null, output: null, total: null, cached: null, reasoning: null, images: { count: 1, size, quality: 'standard' } });
    expect(addUsage(images('512x512'), images('512x512')).images).toEqual({ count: 2, size: '512x512', quality: 'standard' });
    expect(addUsage(images('512x512'), images('256x256')).images).toEqual({ count: 2, size: null, quality: 'standard' });
  });
});
