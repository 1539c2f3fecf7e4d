import { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg } from '../support/proxy-test-helpers';
import { expectJsonRequestStored, relayed } from '../support/relay-test-helpers';

const wire = (x: unknown) => JSON.parse(JSON.stringify(x));

/** Conversations, stored chat completions, fine-tuning jobs and evals through the relay, with the official SDK. */
describe('relay: conversations, stored chat completions, fine-tuning, evals', () => {
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

  it('conversations: create, items (create, list, retrieve, delete), update, delete; the conversation is the session', async () => {
    const o = await proxyOrg(app, fake.url);
    const made = await o.client.conversations.create({ items: [{ type: 'message', role: 'user', content: 'Where is my parcel?' }], metadata: { channel: 'web' } }).withResponse();
    const conv = made.data;
    expect(conv).toMatchObject({ id: expect.stringMatching(/^conv_/), object: 'conversation', metadata: { channel: 'web' } });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/conversations' });
    expectJsonRequestStored(c);
    expect(c.record).toMatchObject({ object_id: conv.id, response_body: wire(conv) });

    const added = await o.client.conversations.items.create(conv.id, { items: [{ type: 'message', role: 'assistant', content: 'It left the depot.' }] }).withResponse();
    const item = added.data.data[0] as any;
    expect(item).toMatchObject({ id: expect.stringMatching(/^msg_/), type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'It left the depot.' }] });
    const a = await relayed(o, fake, added.response.headers, { method: 'POST', route: '/v1/conversations/{conversation_id}/items' });
    expectJsonRequestStored(a);
    expect(a.record).toMatchObject({ object_id: conv.id, session_id: conv.id });

    const listed = await o.client.conversations.items.list(conv.id, { order: 'asc', limit: 10 }).withResponse();
    expect(listed.data.data.map((i: any) => [i.role, i.content[0].text])).toEqual([
      ['user', 'Where is my parcel?'],
      ['assistant', 'It left the depot.'],
    ]);
    const l = await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/conversations/{conversation_id}/items' });
    expect(l.upstream.path).toBe(`/v1/conversations/${conv.id}/items?order=asc&limit=10`);
    expect(l.record.session_id).toBe(conv.id);

    const got = await o.client.conversations.items.retrieve(item.id, { conversation_id: conv.id }).withResponse();
    expect(got.data).toEqual(item);
    await relayed(o, fake, got.response.headers, { method: 'GET', route: '/v1/conversations/{conversation_id}/items/{item_id}' });
    const removed = await o.client.conversations.items.delete(item.id, { conversation_id: conv.id }).withResponse();
    expect(removed.data.id).toBe(conv.id);
    await relayed(o, fake, removed.response.headers, { method: 'DELETE', route: '/v1/conversations/{conversation_id}/items/{item_id}' });

    const updated = await o.client.conversations.update(conv.id, { metadata: { channel: 'email' } }).withResponse();
    expect(updated.data.metadata).toEqual({ channel: 'email' });
    await relayed(o, fake, updated.response.headers, { method: 'POST', route: '/v1/conversations/{conversation_id}' });
    const retrieved = await o.client.conversations.retrieve(conv.id).withResponse();
    expect(retrieved.data).toEqual(updated.data);
    await relayed(o, fake, retrieved.response.headers, { method: 'GET', route: '/v1/conversations/{conversation_id}' });
    const deleted = await o.client.conversations.delete(conv.id).withResponse();
    expect(deleted.data).toEqual({ id: conv.id, object: 'conversation.deleted', deleted: true });
    const x = await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/conversations/{conversation_id}' });
    expect(x.record.object_id).toBe(conv.id);
    await expect(o.client.conversations.retrieve(conv.id)).rejects.toMatchObject({ status: 404 });
  });

  it('stored chat completions: list (by metadata), retrieve, update, messages, delete', async () => {
    const o = await proxyOrg(app, fake.url);
    const stored = fake.api.seedChatCompletion({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'What is 2+2?' }], metadata: { run: o.orgId } });
    fake.api.seedChatCompletion({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'another' }], metadata: { run: 'other' } });

    const listed = await o.client.chat.completions.list({ metadata: { run: o.orgId }, limit: 5 }).withResponse();
    expect(listed.data.data.map((c) => c.id)).toEqual([stored.id]);
    const l = await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/chat/completions' });
    expect(decodeURIComponent(l.upstream.path)).toBe(`/v1/chat/completions?metadata[run]=${o.orgId}&limit=5`);
    expect(l.record.request_body).toBeNull();

    const got = await o.client.chat.completions.retrieve(stored.id).withResponse();
    expect(got.data.choices[0].message.content).toBe('Echo: What is 2+2?');
    const g = await relayed(o, fake, got.response.headers, { method: 'GET', route: '/v1/chat/completions/{completion_id}' });
    expect(g.record).toMatchObject({ object_id: stored.id, response_body: wire(got.data) });

    const updated = await o.client.chat.completions.update(stored.id, { metadata: { run: o.orgId, reviewed: 'yes' } }).withResponse();
    expect(updated.data.metadata).toEqual({ run: o.orgId, reviewed: 'yes' });
    const u = await relayed(o, fake, updated.response.headers, { method: 'POST', route: '/v1/chat/completions/{completion_id}' });
    expectJsonRequestStored(u);
    expect(u.record.object_id).toBe(stored.id);

    const messages = await o.client.chat.completions.messages.list(stored.id).withResponse();
    expect(messages.data.data.map((m) => [m.role, m.content])).toEqual([
      ['user', 'What is 2+2?'],
      ['assistant', 'Echo: What is 2+2?'],
    ]);
    await relayed(o, fake, messages.response.headers, { method: 'GET', route: '/v1/chat/completions/{completion_id}/messages' });

    const deleted = await o.client.chat.completions.delete(stored.id).withResponse();
    expect(deleted.data).toEqual({ object: 'chat.completion.deleted', id: stored.id, deleted: true });
    const x = await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/chat/completions/{completion_id}' });
    expect(x.record.object_id).toBe(stored.id);
  });

  it('fine-tuning jobs: create from an uploaded file, events, retrieve (succeeded), checkpoints, list, cancel', async () => {
    const o = await proxyOrg(app, fake.url);
    const training = await o.client.files.create({
      file: await toFile(Buffer.from('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n'), 'train.jsonl'),
      purpose: 'fine-tune',
    });
    const made = await o.client.fineTuning.jobs
      .create({ model: 'gpt-4o-mini-2024-07-18', training_file: training.id, suffix: 'support', hyperparameters: { n_epochs: 2 } })
      .withResponse();
    const job = made.data;
    expect(job).toMatchObject({ id: expect.stringMatching(/^ftjob-/), object: 'fine_tuning.job', status: 'validating_files', training_file: training.id });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/fine_tuning/jobs' });
    expectJsonRequestStored(c);
    expect(c.record).toMatchObject({ object_id: job.id, model: 'gpt-4o-mini-2024-07-18' });

    const events = await o.client.fineTuning.jobs.listEvents(job.id, { limit: 10 }).withResponse();
    expect(events.data.data.map((e) => e.message)).toEqual([`Created fine-tuning job: ${job.id}`, `Validating training file: ${training.id}`]);
    const e = await relayed(o, fake, events.response.headers, { method: 'GET', route: '/v1/fine_tuning/jobs/{fine_tuning_job_id}/events' });
    expect(e.record.object_id).toBe(job.id);

    const done = await o.client.fineTuning.jobs.retrieve(job.id).withResponse();
    expect(done.data).toMatchObject({ status: 'succeeded', fine_tuned_model: expect.stringMatching(/^ft:gpt-4o-mini-2024-07-18:fake-org:support:/) });
    await relayed(o, fake, done.response.headers, { method: 'GET', route: '/v1/fine_tuning/jobs/{fine_tuning_job_id}' });
    // the result file the job made is reachable through the proxy
    expect((await o.client.files.retrieve(done.data.result_files[0])).purpose).toBe('fine-tune-results');

    const checkpoints = await o.client.fineTuning.jobs.checkpoints.list(job.id).withResponse();
    expect(checkpoints.data.data.map((k) => k.step_number)).toEqual([3, 2, 1]);
    await relayed(o, fake, checkpoints.response.headers, { method: 'GET', route: '/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints' });

    const listed = await o.client.fineTuning.jobs.list().withResponse();
    expect(listed.data.data.map((j) => j.id)).toEqual([job.id]);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/fine_tuning/jobs' });

    const other = await o.client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: training.id });
    const cancelled = await o.client.fineTuning.jobs.cancel(other.id).withResponse();
    expect(cancelled.data.status).toBe('cancelled');
    const x = await relayed(o, fake, cancelled.response.headers, { method: 'POST', route: '/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel' });
    expect(x.record.object_id).toBe(other.id);
  });

  it('evals: create, runs (create, retrieve completed, output items, cancel), update, list, delete', async () => {
    const o = await proxyOrg(app, fake.url);
    const made = await o.client.evals
      .create({
        name: 'capitals',
        data_source_config: { type: 'custom', item_schema: { type: 'object', properties: { country: { type: 'string' }, capital: { type: 'string' } } }, include_sample_schema: true },
        testing_criteria: [{ type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.capital}}', operation: 'eq' }],
      })
      .withResponse();
    const ev = made.data;
    expect(ev).toMatchObject({ id: expect.stringMatching(/^eval_/), object: 'eval', name: 'capitals' });
    const c = await relayed(o, fake, made.response.headers, { method: 'POST', route: '/v1/evals' });
    expectJsonRequestStored(c);
    expect(c.record.object_id).toBe(ev.id);

    const rows = [{ item: { country: 'France', capital: 'Paris' } }, { item: { country: 'Japan', capital: 'Tokyo' } }];
    const started = await o.client.evals.runs
      .create(ev.id, { name: 'first', data_source: { type: 'jsonl', source: { type: 'file_content', content: rows } } })
      .withResponse();
    const run = started.data;
    expect(run).toMatchObject({ id: expect.stringMatching(/^evalrun_/), object: 'eval.run', eval_id: ev.id, status: 'queued' });
    const r = await relayed(o, fake, started.response.headers, { method: 'POST', route: '/v1/evals/{eval_id}/runs' });
    expectJsonRequestStored(r);
    expect(r.record.object_id).toBe(ev.id);

    const done = await o.client.evals.runs.retrieve(run.id, { eval_id: ev.id }).withResponse();
    expect(done.data).toMatchObject({ status: 'completed', result_counts: { total: 2, passed: 2, failed: 0, errored: 0 } });
    await relayed(o, fake, done.response.headers, { method: 'GET', route: '/v1/evals/{eval_id}/runs/{run_id}' });
    const items = await o.client.evals.runs.outputItems.list(run.id, { eval_id: ev.id }).withResponse();
    expect(items.data.data.map((i) => i.datasource_item)).toEqual(rows.map((x) => x.item));
    await relayed(o, fake, items.response.headers, { method: 'GET', route: '/v1/evals/{eval_id}/runs/{run_id}/output_items' });

    const second = await o.client.evals.runs.create(ev.id, { data_source: { type: 'jsonl', source: { type: 'file_content', content: rows } } });
    const cancelled = await o.client.evals.runs.cancel(second.id, { eval_id: ev.id }).withResponse();
    expect(cancelled.data.status).toBe('canceled');
    await relayed(o, fake, cancelled.response.headers, { method: 'POST', route: '/v1/evals/{eval_id}/runs/{run_id}/cancel' });

    const updated = await o.client.evals.update(ev.id, { name: 'capitals v2', metadata: { owner: 'qa' } }).withResponse();
    expect(updated.data).toMatchObject({ name: 'capitals v2', metadata: { owner: 'qa' } });
    await relayed(o, fake, updated.response.headers, { method: 'POST', route: '/v1/evals/{eval_id}' });
    const listed = await o.client.evals.list().withResponse();
    expect(listed.data.data.map((x) => x.id)).toContain(ev.id);
    await relayed(o, fake, listed.response.headers, { method: 'GET', route: '/v1/evals' });

    const deleted = await o.client.evals.delete(ev.id).withResponse();
    expect(deleted.data).toEqual({ object: 'eval.deleted', deleted: true, eval_id: ev.id });
    const x = await relayed(o, fake, deleted.response.headers, { method: 'DELETE', route: '/v1/evals/{eval_id}' });
    expect(x.record.object_id).toBe(ev.id);
  });
});
