import { toFile } from 'openai';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg } from '../support/proxy-test-helpers';
import { expectBinaryAnswerNotStored, expectJsonRequestStored, expectMultipartNotStored, relayed } from '../support/relay-test-helpers';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** the SDK's objects as JSON (what the wire carried) */
const wire = (x: unknown) => JSON.parse(JSON.stringify(x));

/** Files, uploads, batches, vector stores and containers through the relay, with the official SDK. */
describe('relay: files, uploads, batches, vector stores, containers', () => {
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

  it('files: create (multipart, not stored), list with a cursor, retrieve, content (binary), delete', async () => {
    const o = await proxyOrg(app, fake.url);
    const content = Buffer.from(Array.from({ length: 2000 }, (_, i) => `{"row":${i},"text":"line ${i}"}`).join('\n'));
    const made = await o.client.files.create({ file: await toFile(content, 'rows.jsonl'), purpose: 'user_data' }).withResponse();
    const file = made.data;
    expect(file).toMatchObject({ object: 'file', id: expect.stringMatching(/^file-/), bytes: content.length, filename: 'rows.jsonl', purpose: 'user_data' });
    expect(fake.api.file(file.id)!.sha256).toBe(sha256(content));
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/files' });
    expect(c.record.object_id).toBe(file.id);
    expectMultipartNotStored(c, content);
    expect(c.upstream.multipart!.files[0]).toMatchObject({ filename: 'rows.jsonl', bytes: content.length, sha256: sha256(content) });
    expect(c.record.response_body).toEqual(wire(file));

    const second = await o.client.files.create({ file: await toFile(Buffer.from('tiny'), 'tiny.txt'), purpose: 'user_data' });
    const first = await o.client.files.list({ limit: 1 }).withResponse();
    expect(first.data.data.map((f) => f.id)).toEqual([second.id]);
    expect(first.data.has_more).toBe(true);
    const next = await o.client.files.list({ limit: 1, after: second.id }).withResponse();
    expect(next.data.data.map((f) => f.id)).toEqual([file.id]);
    const l = await relayed(o, fake, next.response.headers, { method: 'GET', route: '/v1/files' });
    expect(l.upstream.path).toBe(`/v1/files?limit=1&after=${second.id}`);
    expect(l.record.request_body).toBeNull();
    expect(l.record.response_body.data.map((f: any) => f.id)).toEqual([file.id]);

    const got = await o.client.files.retrieve(file.id).withResponse();
    expect(got.data).toEqual(file);
    const g = await relayed(o, fake, got.response.headers, { method: 'GET', route: '/v1/files/{file_id}' });
    expect(g.record.object_id).toBe(file.id);

    const dl = await o.client.files.content(file.id);
    expect(Buffer.from(await dl.arrayBuffer()).equals(content)).toBe(true);
    const d = await relayed(o, fake, dl.headers, { method: 'GET', route: '/v1/files/{file_id}/content' });
    expect(d.record.object_id).toBe(file.id);
    expectBinaryAnswerNotStored(d, 'application/octet-stream', content.length);

    const del = await o.client.files.delete(file.id).withResponse();
    expect(del.data).toEqual({ object: 'file', deleted: true, id: file.id });
    const x = await relayed(o, fake, del.response.headers, { method: 'DELETE', route: '/v1/files/{file_id}' });
    expect(x.record).toMatchObject({ object_id: file.id, response_body: { deleted: true, id: file.id } });

    // the upstream's 404 for the deleted file comes back in OpenAI's envelope
    const gone = await o.client.files.retrieve(file.id).catch((e) => e);
    expect(gone).toMatchObject({ status: 404, error: { type: 'invalid_request_error', message: `No such File object: ${file.id}` } });
  });

  it('uploads: create, parts as multipart, complete into a file, cancel', async () => {
    const o = await proxyOrg(app, fake.url);
    const parts = [Buffer.alloc(70_000, 'a'), Buffer.alloc(30_000, 'b')];
    const whole = Buffer.concat(parts);
    const made = await o.client.uploads.create({ bytes: whole.length, filename: 'ab.txt', mime_type: 'text/plain', purpose: 'user_data' }).withResponse();
    const upload = made.data;
    expect(upload).toMatchObject({ id: expect.stringMatching(/^upload_/), object: 'upload', status: 'pending', bytes: whole.length });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/uploads' });
    expectJsonRequestStored(c);
    expect(c.record.object_id).toBe(upload.id);

    const ids: string[] = [];
    for (const [i, data] of parts.entries()) {
      const part = await o.client.uploads.parts.create(upload.id, { data: await toFile(data, `part-${i}`) }).withResponse();
      expect(part.data).toMatchObject({ id: expect.stringMatching(/^part_/), object: 'upload.part', upload_id: upload.id });
      const p = await relayed(o, fake, part.response.headers, { method: 'POST', route: '/v1/uploads/{upload_id}/parts' });
      expect(p.record.object_id).toBe(upload.id);
      expectMultipartNotStored(p, data);
      expect(p.upstream.multipart!.files[0]).toMatchObject({ field: 'data', bytes: data.length, sha256: sha256(data) });
      ids.push(part.data.id);
    }

    const done = await o.client.uploads.complete(upload.id, { part_ids: ids }).withResponse();
    expect(done.data).toMatchObject({ status: 'completed', file: { object: 'file', bytes: whole.length, filename: 'ab.txt' } });
    expect(fake.api.file(done.data.file!.id)!.sha256).toBe(sha256(whole));
    const d = await relayed(o, fake, done.response.headers, { method: 'POST', route: '/v1/uploads/{upload_id}/complete' });
    expectJsonRequestStored(d);
    expect(d.record.object_id).toBe(upload.id);
    expect(d.record.response_body).toEqual(wire(done.data));
    // the file the upload made is reachable through the proxy
    expect((await o.client.files.retrieve(done.data.file!.id)).bytes).toBe(whole.length);

    const other = await o.client.uploads.create({ bytes: 5, filename: 'x.txt', mime_type: 'text/plain', purpose: 'user_data' });
    const cancelled = await o.client.uploads.cancel(other.id).withResponse();
    expect(cancelled.data.status).toBe('cancelled');
    const x = await relayed(o, fake, cancelled.response.headers, { method: 'POST', route: '/v1/uploads/{upload_id}/cancel' });
    expect(x.record.object_id).toBe(other.id);
  });

  it('batches: create from an uploaded file, retrieve (completed, with usage), list, cancel', async () => {
    const o = await proxyOrg(app, fake.url);
    const line = (i: number) =>
      JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `question ${i}` }] } });
    const input = await o.client.files.create({ file: await toFile(Buffer.from([1, 2, 3].map(line).join('\n')), 'batch.jsonl'), purpose: 'batch' });

    const made = await o.client.batches
      .create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'nightly' } })
      .withResponse();
    const batch = made.data;
    expect(batch).toMatchObject({ id: expect.stringMatching(/^batch_/), object: 'batch', status: 'validating', input_file_id: input.id, request_counts: { total: 3 } });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/batches' });
    expectJsonRequestStored(c);
    expect(c.record).toMatchObject({ object_id: batch.id, response_body: wire(batch) });

    const got = await o.client.batches.retrieve(batch.id).withResponse();
    expect(got.data).toMatchObject({ id: batch.id, status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 }, output_file_id: expect.stringMatching(/^file-/) });
    expect(got.data.usage!.total_tokens).toBeGreaterThan(0);
    const g = await relayed(o, fake, got.response.headers, { method: 'GET', route: '/v1/batches/{batch_id}' });
    expect(g.record).toMatchObject({ object_id: batch.id, response_body: wire(got.data) });
    // the output file the batch made downloads through the proxy
    const out = await (await o.client.files.content(got.data.output_file_id!)).text();
    expect(out.trim().split('\n').map((l) => JSON.parse(l).custom_id)).toEqual(['req-1', 'req-2', 'req-3']);

    const listed = await o.client.batches.list({ limit: 5 }).withResponse();
    expect(listed.data.data.map((b) => b.id)).toEqual([batch.id]);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/batches' });

    const other = await o.client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const cancelled = await o.client.batches.cancel(other.id).withResponse();
    expect(cancelled.data.status).toBe('cancelling');
    const x = await relayed(o, fake, cancelled.response.headers, { method: 'POST', route: '/v1/batches/{batch_id}/cancel' });
    expect(x.record.object_id).toBe(other.id);
    expect((await o.client.batches.retrieve(other.id)).status).toBe('cancelled');
    // a finished batch cannot be cancelled: the upstream's 400, passed on and recorded as failed
    const refused = await o.client.batches.cancel(batch.id).withResponse().catch((e) => e);
    expect(refused).toMatchObject({ status: 400 });
    await relayed(o, fake, refused.headers, { method: 'POST', route: '/v1/batches/{batch_id}/cancel', status: 'failed', upstreamStatus: 400 });

    // the finished batch's usage is spent once, at the Batch API's half price, however often the batch is read
    const again = await o.client.batches.retrieve(batch.id).withResponse();
    const g2 = await relayed(o, fake, again.response.headers, { method: 'GET', route: '/v1/batches/{batch_id}' });
    const u = got.data.usage!;
    // gpt-4o-mini: $0.15 in, $0.60 out per million tokens; batches half that
    expect((g.record.cost ?? 0) + (g2.record.cost ?? 0)).toBeCloseTo(((u.input_tokens * 0.15 + u.output_tokens * 0.6) / 1e6) * 0.5, 15);
  });

  it('vector stores: create, files, file batches, search, update, list, delete (OpenAI-Beta reaches the upstream)', async () => {
    const o = await proxyOrg(app, fake.url);
    const doc = await o.client.files.create({
      file: await toFile(Buffer.from('Refunds take five days.\n\nThe proxy keeps a record of every call.'), 'faq.txt'),
      purpose: 'assistants',
    });
    const made = await o.client.vectorStores.create({ name: 'faq', metadata: { team: 'support' } }).withResponse();
    const vs = made.data;
    expect(vs).toMatchObject({ id: expect.stringMatching(/^vs_/), object: 'vector_store', name: 'faq', status: 'completed' });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/vector_stores' });
    expect(c.upstream.headers['openai-beta']).toBe('assistants=v2');
    expectJsonRequestStored(c);
    expect(c.record.object_id).toBe(vs.id);

    const attached = await o.client.vectorStores.files.create(vs.id, { file_id: doc.id, attributes: { lang: 'en' } }).withResponse();
    expect(attached.data).toMatchObject({ id: doc.id, object: 'vector_store.file', vector_store_id: vs.id, status: 'completed' });
    const a = await relayed(o, fake, attached.response.headers, { method: 'POST', route: '/v1/vector_stores/{vector_store_id}/files' });
    expectJsonRequestStored(a);

    const hits = await o.client.vectorStores.search(vs.id, { query: 'refunds', max_num_results: 3 }).withResponse();
    expect(hits.data.data).toEqual([expect.objectContaining({ file_id: doc.id, filename: 'faq.txt', content: [{ type: 'text', text: 'Refunds take five days.' }] })]);
    const s = await relayed(o, fake, hits.response.headers, { method: 'POST', route: '/v1/vector_stores/{vector_store_id}/search' });
    expect(s.record.object_id).toBe(vs.id);
    expect(s.record.response_body.data[0].content[0].text).toBe('Refunds take five days.');

    const fb = await o.client.vectorStores.fileBatches.create(vs.id, { file_ids: [doc.id] }).withResponse();
    expect(fb.data).toMatchObject({ id: expect.stringMatching(/^vsfb_/), object: 'vector_store.files_batch', status: 'completed' });
    await relayed(o, fake, fb.response.headers, { method: 'POST', route: '/v1/vector_stores/{vector_store_id}/file_batches' });
    const fbFiles = await o.client.vectorStores.fileBatches.listFiles(fb.data.id, { vector_store_id: vs.id }).withResponse();
    expect(fbFiles.data.data.map((f) => f.id)).toEqual([doc.id]);
    await relayed(o, fake, fbFiles.response.headers, { method: 'GET', route: '/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files' });

    const updated = await o.client.vectorStores.update(vs.id, { name: 'faq-2' }).withResponse();
    expect(updated.data).toMatchObject({ name: 'faq-2', file_counts: { total: 1, completed: 1 } });
    await relayed(o, fake, updated.response.headers, { method: 'POST', route: '/v1/vector_stores/{vector_store_id}' });
    const listed = await o.client.vectorStores.list().withResponse();
    expect(listed.data.data.map((v) => v.id)).toEqual([vs.id]);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/vector_stores' });

    const detached = await o.client.vectorStores.files.delete(doc.id, { vector_store_id: vs.id }).withResponse();
    expect(detached.data).toEqual({ id: doc.id, object: 'vector_store.file.deleted', deleted: true });
    await relayed(o, fake, detached.response.headers, { method: 'DELETE', route: '/v1/vector_stores/{vector_store_id}/files/{file_id}' });
    const deleted = await o.client.vectorStores.delete(vs.id).withResponse();
    expect(deleted.data).toEqual({ id: vs.id, object: 'vector_store.deleted', deleted: true });
    const x = await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/vector_stores/{vector_store_id}' });
    expect(x.record.object_id).toBe(vs.id);
  });

  it('containers: create, files (multipart and by file id), content (binary), list, delete', async () => {
    const o = await proxyOrg(app, fake.url);
    const made = await o.client.containers.create({ name: 'sandbox', expires_after: { anchor: 'last_active_at', minutes: 10 } }).withResponse();
    const box = made.data;
    expect(box).toMatchObject({ id: expect.stringMatching(/^cntr_/), object: 'container', name: 'sandbox', status: 'running' });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/containers' });
    expectJsonRequestStored(c);
    expect(c.record.object_id).toBe(box.id);

    const script = Buffer.from('print("hello from the container")\n');
    const added = await o.client.containers.files.create(box.id, { file: await toFile(script, 'hello.py') }).withResponse();
    expect(added.data).toMatchObject({ id: expect.stringMatching(/^cfile_/), object: 'container.file', bytes: script.length, path: '/mnt/data/hello.py' });
    const a = await relayed(o, fake, added.response.headers, { method: 'POST', route: '/v1/containers/{container_id}/files' });
    expectMultipartNotStored(a, script);
    expect(a.record.object_id).toBe(box.id);

    const uploaded = await o.client.files.create({ file: await toFile(Buffer.from('a,b\n1,2\n'), 'data.csv'), purpose: 'user_data' });
    const byId = await o.client.containers.files.create(box.id, { file_id: uploaded.id }).withResponse();
    expect(byId.data).toMatchObject({ bytes: 8, path: '/mnt/data/data.csv' });
    expectJsonRequestStored(await relayed(o, fake, byId.response.headers, { method: 'POST', route: '/v1/containers/{container_id}/files' }));

    const content = await o.client.containers.files.content.retrieve(added.data.id, { container_id: box.id });
    expect(Buffer.from(await content.arrayBuffer()).equals(script)).toBe(true);
    const d = await relayed(o, fake, content.headers, { method: 'GET', route: '/v1/containers/{container_id}/files/{file_id}/content' });
    expectBinaryAnswerNotStored(d, 'application/octet-stream', script.length);

    const listed = await o.client.containers.files.list(box.id).withResponse();
    expect(listed.data.data.map((f) => f.id)).toEqual([byId.data.id, added.data.id]);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/containers/{container_id}/files' });

    const removed = await o.client.containers.files.delete(added.data.id, { container_id: box.id }).withResponse();
    await relayed(o, fake, removed.response.headers, { method: 'DELETE', route: '/v1/containers/{container_id}/files/{file_id}' });
    const deleted = await o.client.containers.delete(box.id).withResponse();
    const x = await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/containers/{container_id}' });
    expect(x.record.object_id).toBe(box.id);
    await expect(o.client.containers.retrieve(box.id)).rejects.toMatchObject({ status: 404 });
  });
});
