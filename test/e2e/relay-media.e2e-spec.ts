import { toFile } from 'openai';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { speechAudio } from '../support/fake-openai-api';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg } from '../support/proxy-test-helpers';
import { expectBinaryAnswerNotStored, expectJsonRequestStored, expectMultipartNotStored, relayed } from '../support/relay-test-helpers';

/** Images, audio and videos through the relay, with the official SDK: multipart in, binary out. */
describe('relay: images, audio, videos', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('images: generate (JSON, usage and cost), edit and createVariation (multipart); base64 images are not stored', async () => {
    const o = await proxyOrg(app, fake.url);
    const gen = await o.client.images.generate({ model: 'gpt-image-1', prompt: 'a lighthouse at dawn', quality: 'low', size: '1024x1024' }).withResponse();
    const png = Buffer.from(gen.data.data![0].b64_json!, 'base64');
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(gen.data.usage).toMatchObject({ input_tokens: 5, output_tokens: 272, total_tokens: 277 });
    const g = await relayed(o, fake, gen.response.headers, { method: 'POST', route: '/v1/images/generations' });
    expectJsonRequestStored(g);
    expect(g.record.model).toBe('gpt-image-1');
    expect(g.record.usage).toMatchObject({ input_tokens: 5, output_tokens: 272, total_tokens: 277 });
    expect(JSON.stringify(g.record.response_body)).not.toContain(gen.data.data![0].b64_json!.slice(0, 64));

    const edit = await o.client.images
      .edit({ model: 'gpt-image-1', image: await toFile(png, 'lighthouse.png', { type: 'image/png' }), prompt: 'add a storm', quality: 'low' })
      .withResponse();
    expect(edit.data.usage).toMatchObject({ input_tokens: 3 + 323, output_tokens: 272 });
    const e = await relayed(o, fake, edit.response.headers, { method: 'POST', route: '/v1/images/edits' });
    expectMultipartNotStored(e, png);
    expect(e.upstream.multipart!.files[0]).toMatchObject({ field: 'image', filename: 'lighthouse.png', contentType: 'image/png', bytes: png.length });
    expect(e.record).toMatchObject({ model: 'gpt-image-1' });
    expect(e.record.usage).toMatchObject({ input_tokens: 326, output_tokens: 272, total_tokens: 598 });

    const variation = await o.client.images.createVariation({ image: await toFile(png, 'lighthouse.png', { type: 'image/png' }), n: 2, size: '256x256' }).withResponse();
    expect(variation.data.data!.map((d) => d.url)).toEqual([expect.stringMatching(/^https:\/\//), expect.stringMatching(/^https:\/\//)]);
    const v = await relayed(o, fake, variation.response.headers, { method: 'POST', route: '/v1/images/variations' });
    expectMultipartNotStored(v, png);
    expect(v.record.response_body).toEqual(JSON.parse(JSON.stringify(variation.data)));

    // gpt-image-1 (low, 1024x1024): text input $5, image input $10, image output $40 per million tokens
    expect(g.record.cost).toBeCloseTo((5 * 5 + 272 * 40) / 1e6, 12);
    expect(e.record.cost).toBeCloseTo((3 * 5 + 323 * 10 + 272 * 40) / 1e6, 12);
    // dall-e-2 (the default for variations), 256x256: $0.016 an image
    expect(v.record.cost).toBeCloseTo(2 * 0.016, 12);
  });

  it('audio.speech.create: the audio streams back byte for byte; recorded by type and size, not stored', async () => {
    const o = await proxyOrg(app, fake.url);
    const body = { model: 'gpt-4o-mini-tts', voice: 'coral', input: 'The quick brown fox jumped over the lazy dog.' } as const;
    const speech = await o.client.audio.speech.create(body);
    expect(speech.headers.get('content-type')).toBe('audio/mpeg');
    const bytes = Buffer.from(await speech.arrayBuffer());
    const expected = speechAudio(body);
    expect(bytes.length).toBe(expected.length);
    expect(bytes.equals(expected)).toBe(true);
    const r = await relayed(o, fake, speech.headers, { method: 'POST', route: '/v1/audio/speech' });
    expectJsonRequestStored(r);
    expectBinaryAnswerNotStored(r, 'audio/mpeg', expected.length);
    expect(r.record.model).toBe('gpt-4o-mini-tts');
  });

  it('audio transcriptions (JSON with usage and cost; text) and translations: multipart in, the file never stored', async () => {
    const o = await proxyOrg(app, fake.url);
    const audio = Buffer.alloc(48_000);
    for (let i = 0; i < audio.length; i++) audio[i] = (i * 31) & 0xff;
    const t = await o.client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(audio, 'call.mp3', { type: 'audio/mpeg' }), language: 'en' }).withResponse();
    expect(t.data.text).toMatch(/^Transcript of call\.mp3: 48000 bytes, sha256 [0-9a-f]{16}\.$/);
    const usage = (t.data as any).usage;
    // 3 s of audio at 16 kB/s, 10 audio tokens a second
    expect(usage).toMatchObject({ type: 'tokens', input_tokens: 30, input_token_details: { audio_tokens: 30, text_tokens: 0 } });
    const r = await relayed(o, fake, t.response.headers, { method: 'POST', route: '/v1/audio/transcriptions' });
    expectMultipartNotStored(r, audio);
    expect(r.upstream.multipart!.fields).toMatchObject({ model: ['gpt-4o-transcribe'], language: ['en'] });
    expect(r.record).toMatchObject({ model: 'gpt-4o-transcribe', response_body: t.data });
    expect(r.record.usage).toMatchObject({ input_tokens: 30, output_tokens: usage.output_tokens, total_tokens: usage.total_tokens });

    const text = await o.client.audio.transcriptions.create({ model: 'gpt-4o-mini-transcribe', file: await toFile(audio, 'call.mp3'), response_format: 'text' }).withResponse();
    expect(text.data).toBe(`${t.data.text}\n`);
    const tx = await relayed(o, fake, text.response.headers, { method: 'POST', route: '/v1/audio/transcriptions' });
    expect(tx.record).toMatchObject({ response_content_type: 'text/plain; charset=utf-8', response_bytes: Buffer.byteLength(text.data as unknown as string) });

    // streamed: the transcript's deltas as server-sent events, usage from the last one
    const streamed = await o.client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(audio, 'call.mp3'), stream: true }).withResponse();
    let deltas = '';
    let doneEvent: any;
    for await (const ev of streamed.data) {
      if (ev.type === 'transcript.text.delta') deltas += ev.delta;
      if (ev.type === 'transcript.text.done') doneEvent = ev;
    }
    expect(deltas).toBe(t.data.text);
    expect(doneEvent.usage).toEqual(usage);
    const st = await relayed(o, fake, streamed.response.headers, { method: 'POST', route: '/v1/audio/transcriptions' });
    expectMultipartNotStored(st, audio);
    expect(st.record.usage).toMatchObject({ input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, total_tokens: usage.total_tokens });

    const tr = await o.client.audio.translations.create({ model: 'whisper-1', file: await toFile(audio, 'anruf.mp3') }).withResponse();
    expect(tr.data.text).toMatch(/^Translation of anruf\.mp3: 48000 bytes/);
    const x = await relayed(o, fake, tr.response.headers, { method: 'POST', route: '/v1/audio/translations' });
    expectMultipartNotStored(x, audio);
    expect(x.record.model).toBe('whisper-1');

    // gpt-4o-transcribe: audio input $6, text output $10 per million tokens
    expect(r.record.cost).toBeCloseTo((30 * 6 + usage.output_tokens * 10) / 1e6, 12);
    expect(st.record.cost).toBeCloseTo(r.record.cost, 15);
  });

  it('videos: create (multipart), retrieve, content (binary), remix, list, delete', async () => {
    const o = await proxyOrg(app, fake.url);
    const made = await o.client.videos.create({ model: 'sora-2', prompt: 'a paper boat on a river', seconds: '4', size: '1280x720' }).withResponse();
    const video = made.data;
    expect(video).toMatchObject({ id: expect.stringMatching(/^video_/), object: 'video', status: 'queued', seconds: '4', size: '1280x720' });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/videos' });
    expect(c.record.request_content_type).toMatch(/^multipart\/form-data; boundary=/);
    expect(c.record).toMatchObject({ object_id: video.id, model: 'sora-2', response_body: JSON.parse(JSON.stringify(video)) });

    const got = await o.client.videos.retrieve(video.id).withResponse();
    expect(got.data).toMatchObject({ status: 'completed', progress: 100 });
    const g = await relayed(o, fake, got.response.headers, { method: 'GET', route: '/v1/videos/{video_id}' });
    expect(g.record.object_id).toBe(video.id);

    const content = await o.client.videos.downloadContent(video.id);
    expect(content.headers.get('content-type')).toBe('video/mp4');
    const bytes = Buffer.from(await content.arrayBuffer());
    expect(bytes.length).toBe(4 * 64 * 1024);
    const d = await relayed(o, fake, content.headers, { method: 'GET', route: '/v1/videos/{video_id}/content' });
    expectBinaryAnswerNotStored(d, 'video/mp4', bytes.length);
    expect(d.upstream.response!.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));

    const remix = await o.client.videos.remix(video.id, { prompt: 'the same, at night' }).withResponse();
    expect(remix.data).toMatchObject({ remixed_from_video_id: video.id, status: 'queued' });
    const rm = await relayed(o, fake, remix.response.headers, { method: 'POST', route: '/v1/videos/{video_id}/remix' });
    expect(rm.record.object_id).toBe(video.id);

    const listed = await o.client.videos.list().withResponse();
    expect(listed.data.data.map((x) => x.id)).toEqual([remix.data.id, video.id]);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/videos' });
    const deleted = await o.client.videos.delete(video.id).withResponse();
    expect(deleted.data).toEqual({ id: video.id, object: 'video.deleted', deleted: true });
    await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/videos/{video_id}' });
  });
});
