import OpenAI, { toFile, toStreamingFile } from 'openai';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeEmbedding, patternChunks, speechAudio } from '../support/fake-openai-api';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';

/**
 * The fake upstream's route families beyond responses and chat, with the official SDK pointed straight at it: every
 * answer parses, objects persist between calls, and uploads and downloads are counted and hashed as they stream.
 * The relay tests (relay-*.e2e-spec.ts) rely on this behaviour.
 */
describe('fake upstream: the rest of the OpenAI API', () => {
  let fake: FakeUpstream;
  let client: OpenAI;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    client = new OpenAI({ apiKey: 'sk-fake-direct', baseURL: fake.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await fake?.close();
  });

  const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

  it('embeddings: float and base64 encodings carry the same vector; usage counts the input', async () => {
    const { data, response } = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha', 'beta gamma'], encoding_format: 'float' }).withResponse();
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    expect(data.data.map((d) => d.embedding.length)).toEqual([1536, 1536]);
    expect(data.data[0].embedding).toEqual(fakeEmbedding('text-embedding-3-small', 'alpha'));
    expect(data.usage).toEqual({ prompt_tokens: 2 + 3, total_tokens: 5 });
    // the SDK asks for base64 by default and decodes it to the same float32 values
    const b64 = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'alpha', dimensions: 8 });
    expect(Array.from(b64.data[0].embedding)).toEqual(fakeEmbedding('text-embedding-3-small', 'alpha', 8));
    expect(JSON.parse(fake.api.recorded('POST', '/v1/embeddings').at(-1)!.rawBody).encoding_format).toBe('base64');
  });

  it('legacy completions: JSON, and a stream whose last chunk carries usage', async () => {
    const c = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'say this', max_tokens: 50 });
    expect(c.object).toBe('text_completion');
    expect(c.choices[0].text).toBe(' Echo: say this');
    expect(c.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    const stream = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'say this', max_tokens: 50, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.text ?? '';
    }
    expect(text).toBe(' Echo: say this');
    expect(chunks.at(-1)!.usage).toEqual(c.usage);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('stop');
  });

  it('moderations flag what they should', async () => {
    const m = await client.moderations.create({ model: 'omni-moderation-latest', input: ['I will kill the process', 'a nice day'] });
    expect(m.results.map((r) => r.flagged)).toEqual([true, false]);
    expect(m.results[0].categories.violence).toBe(true);
  });

  it('files: a streamed upload is counted and hashed; list, retrieve, content and delete', async () => {
    const content = Buffer.from('{"a":1}\n{"b":2}\n');
    const f = await client.files.create({ file: await toFile(content, 'data.jsonl'), purpose: 'user_data' });
    expect(f).toMatchObject({ object: 'file', id: expect.stringMatching(/^file-/), bytes: content.length, filename: 'data.jsonl', purpose: 'user_data', status: 'processed' });
    expect(fake.api.file(f.id)!.sha256).toBe(sha(content));
    const up = fake.api.recorded('POST', '/v1/files').at(-1)!;
    expect(up.multipart!.files[0]).toMatchObject({ field: 'file', filename: 'data.jsonl', bytes: content.length, sha256: sha(content) });
    expect(up.multipart!.fields.purpose).toEqual(['user_data']);

    const second = await client.files.create({ file: toStreamingFile(Readable.from(patternChunks('upload', 300_000)), 'big.bin'), purpose: 'user_data' });
    expect(fake.api.file(second.id)!.sha256).toBe(sha(Buffer.concat([...patternChunks('upload', 300_000)])));

    const page1 = await client.files.list({ limit: 1 });
    expect(page1.data.map((x) => x.id)).toEqual([second.id]);
    expect(page1.has_more).toBe(true);
    const page2 = await client.files.list({ limit: 1, after: second.id });
    expect(page2.data.map((x) => x.id)).toEqual([f.id]);

    expect(await client.files.retrieve(f.id)).toEqual(f);
    const body = Buffer.from(await (await client.files.content(f.id)).arrayBuffer());
    expect(body.equals(content)).toBe(true);
    expect(await client.files.delete(f.id)).toEqual({ object: 'file', deleted: true, id: f.id });
    await expect(client.files.retrieve(f.id)).rejects.toMatchObject({ status: 404 });
  });

  it('multipart bodies split at any byte still parse: boundaries straddling the pieces are found', async () => {
    const boundary = 'b0undary-x';
    const file = Buffer.concat([Buffer.from('\r\n--b0undar'), Buffer.alloc(5000, 0x2d), Buffer.from('\r\n--b0undary'), Buffer.from('y-end')]);
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="tricky.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    for (const piece of [1, 7, 13, 64, 4096]) {
      const answer = await new Promise<any>((resolve, reject) => {
        const req = http.request(`${fake.url}/files`, {
          method: 'POST',
          headers: { authorization: 'Bearer sk-x', 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length },
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => resolve(JSON.parse(text)));
        });
        req.on('error', reject);
        (async () => {
          for (let i = 0; i < body.length; i += piece) {
            req.write(body.subarray(i, i + piece));
            if (i % (piece * 64) === 0) await new Promise((r) => setImmediate(r));
          }
          req.end();
        })().catch(reject);
      });
      expect(answer).toMatchObject({ bytes: file.length, filename: 'tricky.bin', purpose: 'user_data' });
      expect(fake.api.file(answer.id)!.sha256).toBe(sha(file));
    }
  });

  it('a seeded file of a given size downloads as a generated stream', async () => {
    const seeded = fake.api.seedFile({ bytes: 1_000_003, filename: 'out.jsonl' });
    const res = await client.files.content(seeded.id);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body as any as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    expect(bytes).toBe(1_000_003);
    expect(hash.digest('hex')).toBe(fake.api.file(seeded.id)!.sha256);
    expect(fake.api.recorded('GET', `/v1/files/${seeded.id}/content`)[0].response).toMatchObject({ bytes, sha256: fake.api.file(seeded.id)!.sha256 });
  });

  it('uploads: parts as multipart, complete makes the file', async () => {
    const a = Buffer.from('hello ');
    const b = Buffer.from('world');
    const u = await client.uploads.create({ bytes: 11, filename: 'hw.txt', mime_type: 'text/plain', purpose: 'assistants' });
    expect(u).toMatchObject({ id: expect.stringMatching(/^upload_/), status: 'pending', file: null });
    const p1 = await client.uploads.parts.create(u.id, { data: await toFile(a, 'p1') });
    const p2 = await client.uploads.parts.create(u.id, { data: await toFile(b, 'p2') });
    expect(p1).toMatchObject({ id: expect.stringMatching(/^part_/), object: 'upload.part', upload_id: u.id });
    await expect(client.uploads.complete(u.id, { part_ids: [p1.id] })).rejects.toMatchObject({ status: 400 });
    const done = await client.uploads.complete(u.id, { part_ids: [p1.id, p2.id] });
    expect(done.status).toBe('completed');
    expect(done.file).toMatchObject({ bytes: 11, filename: 'hw.txt' });
    expect(fake.api.file(done.file!.id)!.sha256).toBe(sha(Buffer.from('hello world')));
    const other = await client.uploads.create({ bytes: 1, filename: 'x', mime_type: 'text/plain', purpose: 'assistants' });
    expect((await client.uploads.cancel(other.id)).status).toBe('cancelled');
  });

  it('batches: validating, then completed with usage and an output file', async () => {
    const line = (i: number) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hi ${i}` }] } });
    const input = await client.files.create({ file: await toFile(Buffer.from(`${line(1)}\n${line(2)}\n`), 'in.jsonl'), purpose: 'batch' });
    const b = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(b).toMatchObject({ id: expect.stringMatching(/^batch_/), status: 'validating', request_counts: { total: 2, completed: 0, failed: 0 } });
    const done = await client.batches.retrieve(b.id);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 2, completed: 2, failed: 0 } });
    expect(done.usage!.total_tokens).toBe(done.usage!.input_tokens + done.usage!.output_tokens);
    const out = await (await client.files.content(done.output_file_id!)).text();
    expect(out.trim().split('\n').map((l) => JSON.parse(l).custom_id)).toEqual(['r1', 'r2']);
    expect((await client.batches.list()).data[0].id).toBe(b.id);
    await expect(client.batches.cancel(b.id)).rejects.toMatchObject({ status: 400 });
    const c = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect((await client.batches.cancel(c.id)).status).toBe('cancelling');
    expect((await client.batches.retrieve(c.id)).status).toBe('cancelled');
    await expect(client.batches.retrieve('batch_unknown')).rejects.toMatchObject({ status: 404 });
  });

  it('vector stores with files, file batches and search', async () => {
    const doc = await client.files.create({ file: await toFile(Buffer.from('The proxy records every exchange.\n\nPandas eat bamboo.'), 'doc.txt'), purpose: 'assistants' });
    const vs = await client.vectorStores.create({ name: 'kb', metadata: { team: 'a' } });
    expect(vs).toMatchObject({ id: expect.stringMatching(/^vs_/), object: 'vector_store', name: 'kb' });
    expect(fake.api.recorded('POST', '/v1/vector_stores').at(-1)!.headers['openai-beta']).toBe('assistants=v2');
    const vf = await client.vectorStores.files.create(vs.id, { file_id: doc.id, attributes: { lang: 'en' } });
    expect(vf).toMatchObject({ id: doc.id, object: 'vector_store.file', vector_store_id: vs.id, status: 'completed' });
    const hits = await client.vectorStores.search(vs.id, { query: 'bamboo' });
    expect(hits.data.map((h) => h.content[0].text)).toEqual(['Pandas eat bamboo.']);
    const fb = await client.vectorStores.fileBatches.create(vs.id, { file_ids: [doc.id] });
    expect(fb).toMatchObject({ id: expect.stringMatching(/^vsfb_/), status: 'completed' });
    expect((await client.vectorStores.fileBatches.listFiles(fb.id, { vector_store_id: vs.id })).data.map((f) => f.id)).toEqual([doc.id]);
    expect((await client.vectorStores.retrieve(vs.id)).file_counts.total).toBe(1);
    expect((await client.vectorStores.update(vs.id, { name: 'kb2' })).name).toBe('kb2');
    expect(await client.vectorStores.files.delete(doc.id, { vector_store_id: vs.id })).toMatchObject({ deleted: true });
    expect(await client.vectorStores.delete(vs.id)).toMatchObject({ id: vs.id, deleted: true });
  });

  it('conversations and their items', async () => {
    const conv = await client.conversations.create({ items: [{ role: 'user', content: 'hello' }], metadata: { topic: 'x' } });
    expect(conv).toMatchObject({ id: expect.stringMatching(/^conv_/), object: 'conversation', metadata: { topic: 'x' } });
    const added = await client.conversations.items.create(conv.id, { items: [{ type: 'message', role: 'assistant', content: 'hi there' }] });
    expect(added.data[0]).toMatchObject({ id: expect.stringMatching(/^msg_/), role: 'assistant', content: [{ type: 'output_text', text: 'hi there' }] });
    const items = await client.conversations.items.list(conv.id, { order: 'asc' });
    expect(items.data.map((i: any) => i.role)).toEqual(['user', 'assistant']);
    const itemId = added.data[0].id!;
    expect(await client.conversations.items.retrieve(itemId, { conversation_id: conv.id })).toEqual(added.data[0]);
    expect((await client.conversations.items.delete(itemId, { conversation_id: conv.id })).id).toBe(conv.id);
    expect((await client.conversations.update(conv.id, { metadata: { topic: 'y' } })).metadata).toEqual({ topic: 'y' });
    expect(await client.conversations.delete(conv.id)).toMatchObject({ deleted: true });
  });

  it('stored chat completions: list, retrieve, update, messages, delete', async () => {
    const seeded = fake.api.seedChatCompletion({ messages: [{ role: 'user', content: 'stored one' }], metadata: { k: 'v' } });
    expect(seeded.id).toMatch(/^chatcmpl-/);
    const list = await client.chat.completions.list({ metadata: { k: 'v' } });
    expect(list.data.map((c) => c.id)).toContain(seeded.id);
    expect((await client.chat.completions.retrieve(seeded.id)).choices[0].message.content).toBe('Echo: stored one');
    expect((await client.chat.completions.update(seeded.id, { metadata: { k: 'w' } })).metadata).toEqual({ k: 'w' });
    const msgs = await client.chat.completions.messages.list(seeded.id);
    expect(msgs.data.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(await client.chat.completions.delete(seeded.id)).toEqual({ object: 'chat.completion.deleted', id: seeded.id, deleted: true });
  });

  it('images: generation with usage, edits and variations as multipart', async () => {
    const gen = await client.images.generate({ model: 'gpt-image-1', prompt: 'a red cube', quality: 'low' });
    expect(Buffer.from(gen.data![0].b64_json!, 'base64').subarray(1, 4).toString()).toBe('PNG');
    expect(gen.usage).toMatchObject({ output_tokens: 272, input_tokens: 3 });
    const png = Buffer.from(gen.data![0].b64_json!, 'base64');
    const edit = await client.images.edit({ model: 'gpt-image-1', image: await toFile(png, 'in.png', { type: 'image/png' }), prompt: 'make it blue' });
    expect(edit.usage!.input_tokens_details.image_tokens).toBe(323);
    const variation = await client.images.createVariation({ image: await toFile(png, 'in.png', { type: 'image/png' }), response_format: 'b64_json' });
    expect(variation.data).toHaveLength(1);
    expect(fake.api.recorded('POST', '/v1/images/variations')[0].multipart!.files[0]).toMatchObject({ bytes: png.length, sha256: sha(png) });
  });

  it('audio: speech streamed as binary, transcriptions and translations from multipart', async () => {
    const speech = await client.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'hello world' });
    expect(speech.headers.get('content-type')).toBe('audio/mpeg');
    const bytes = Buffer.from(await speech.arrayBuffer());
    expect(bytes.equals(speechAudio({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'hello world' }))).toBe(true);

    const audio = Buffer.alloc(32_000, 7);
    const t = await client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(audio, 'a.mp3') });
    expect(t.text).toBe(`Transcript of a.mp3: 32000 bytes, sha256 ${sha(audio).slice(0, 16)}.`);
    expect(t.usage).toMatchObject({ type: 'tokens', input_tokens: 20 });
    const text = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'a.mp3'), response_format: 'text' });
    expect(text).toBe(`${t.text}\n`);
    const verbose = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'a.mp3'), response_format: 'verbose_json', timestamp_granularities: ['word'] });
    expect(verbose.words!.length).toBeGreaterThan(0);
    const tr = await client.audio.translations.create({ model: 'whisper-1', file: await toFile(audio, 'b.mp3') });
    expect(tr.text).toMatch(/^Translation of b\.mp3/);
  });

  it('containers and their files', async () => {
    const c = await client.containers.create({ name: 'box' });
    expect(c).toMatchObject({ id: expect.stringMatching(/^cntr_/), object: 'container', status: 'running' });
    const cf = await client.containers.files.create(c.id, { file: await toFile(Buffer.from('print(1)'), 'a.py') });
    expect(cf).toMatchObject({ object: 'container.file', bytes: 8, path: '/mnt/data/a.py', container_id: c.id });
    const content = await client.containers.files.content.retrieve(cf.id, { container_id: c.id });
    expect(await content.text()).toBe('print(1)');
    expect((await client.containers.files.list(c.id)).data.map((f) => f.id)).toEqual([cf.id]);
    await client.containers.files.delete(cf.id, { container_id: c.id });
    await client.containers.delete(c.id);
    await expect(client.containers.retrieve(c.id)).rejects.toMatchObject({ status: 404 });
  });

  it('fine-tuning jobs: create, events, run to completion, checkpoints, cancel', async () => {
    const train = await client.files.create({ file: await toFile(Buffer.from('{"messages":[]}\n'), 't.jsonl'), purpose: 'fine-tune' });
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: train.id, suffix: 'demo' });
    expect(job).toMatchObject({ id: expect.stringMatching(/^ftjob-/), status: 'validating_files' });
    const events = await client.fineTuning.jobs.listEvents(job.id);
    expect(events.data[0].message).toBe(`Created fine-tuning job: ${job.id}`);
    const done = await client.fineTuning.jobs.retrieve(job.id);
    expect(done.status).toBe('succeeded');
    expect(done.fine_tuned_model).toMatch(/^ft:gpt-4o-mini-2024-07-18:fake-org:demo:/);
    expect((await client.fineTuning.jobs.checkpoints.list(job.id)).data).toHaveLength(3);
    const other = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: train.id });
    expect((await client.fineTuning.jobs.cancel(other.id)).status).toBe('cancelled');
    await expect(client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: 'file-missing' })).rejects.toMatchObject({ status: 400 });
  });

  it('evals and runs', async () => {
    const ev = await client.evals.create({
      name: 'e',
      data_source_config: { type: 'custom', item_schema: { type: 'object', properties: { q: { type: 'string' } } } },
      testing_criteria: [{ type: 'string_check', name: 'match', input: '{{item.q}}', reference: 'x', operation: 'eq' }],
    });
    expect(ev.id).toMatch(/^eval_/);
    const run = await client.evals.runs.create(ev.id, { name: 'r', data_source: { type: 'jsonl', source: { type: 'file_content', content: [{ item: { q: 'x' } }, { item: { q: 'y' } }] } } });
    expect(run).toMatchObject({ id: expect.stringMatching(/^evalrun_/), status: 'queued' });
    const done = await client.evals.runs.retrieve(run.id, { eval_id: ev.id });
    expect(done.result_counts).toEqual({ total: 2, errored: 0, failed: 0, passed: 2 });
    expect((await client.evals.runs.outputItems.list(run.id, { eval_id: ev.id })).data).toHaveLength(2);
    expect(await client.evals.delete(ev.id)).toMatchObject({ deleted: true, eval_id: ev.id });
  });

  it('videos: queued, completed when read, content as binary', async () => {
    const v = await client.videos.create({ prompt: 'a cat', seconds: '4' });
    expect(v).toMatchObject({ id: expect.stringMatching(/^video_/), object: 'video', status: 'queued' });
    await expect(client.videos.downloadContent(v.id)).rejects.toMatchObject({ status: 400 });
    expect((await client.videos.retrieve(v.id)).status).toBe('completed');
    const content = await client.videos.downloadContent(v.id);
    expect(content.headers.get('content-type')).toBe('video/mp4');
    expect((await content.arrayBuffer()).byteLength).toBe(4 * 64 * 1024);
  });

  it('records the key, headers and faults like the rest of the fake', async () => {
    fake.enqueue({ kind: 'status', status: 500 });
    await expect(client.batches.list()).rejects.toMatchObject({ status: 500 });
    fake.enqueue({ kind: 'reset' });
    await expect(client.vectorStores.list()).rejects.toThrow();
    await client.batches.list({}, { headers: { 'Idempotency-Key': 'k-1' } });
    const last = fake.requests.at(-1)!;
    expect(last.headers.authorization).toBe('Bearer sk-fake-direct');
    expect(last.headers['idempotency-key']).toBe('k-1');
    const noKey = await fetch(`${fake.url}/files`);
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as any).error.code).toBe('invalid_api_key');
  });
});
