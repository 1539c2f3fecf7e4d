import OpenAI, { toStreamingFile } from 'openai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api } from '../support/factories';
import { patternChunks } from '../support/fake-openai-api';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest } from '../support/proxy-test-helpers';
import { cliOrg, ServerProcess, startServerProcess } from '../support/server-process';

const MB = 1024 * 1024;
const SIZE = 200 * MB;
/** how far the proxy's resident memory may rise above its resting level while 200 MB pass through it */
const MAX_GROWTH = 100 * MB;

/** The resident set size of a process, from /proc. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** Samples a process's RSS every 25 ms until stopped; resolves with the highest value seen. */
function sampleRss(pid: number): { stop(): number } {
  let max = rss(pid);
  const timer = setInterval(() => (max = Math.max(max, rss(pid))), 25);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, rss(pid));
    },
  };
}

function patternSha256(seed: string, size: number): string {
  const hash = createHash('sha256');
  for (const chunk of patternChunks(seed, size)) hash.update(chunk);
  return hash.digest('hex');
}

/**
 * A 200 MB upload and a 200 MB download through the proxy running as its own process: the bytes arrive intact
 * (counted and hashed by the fake upstream as they stream) and the proxy's memory stays flat. Neither side of the
 * test holds the 200 MB: the upload is generated as it is sent, the download hashed as it arrives.
 */
describe.skipIf(process.platform !== 'linux')('relay: 200 MB uploads and downloads stream through with flat memory', () => {
  let fake: FakeUpstream;
  let server: ServerProcess;
  let client: OpenAI;
  let call: ReturnType<typeof api>;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    server = await startServerProcess();
    const org = await cliOrg(server, fake.url);
    const user = 'bulk-user@example.com';
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: org.token, defaultHeaders: { 'X-User-ID': user }, maxRetries: 0, timeout: 300_000 });
    call = api(server, org.token, user);
    // warm up both paths (code loaded, pools open, buffers sized) before the resting level is taken
    for (let i = 0; i < 3; i++) {
      const f = await client.files.create({ file: toStreamingFile(Readable.from(patternChunks(`warm-${i}`, 4 * MB)), 'warm.bin'), purpose: 'user_data' });
      await (await client.files.content(fake.api.seedFile({ bytes: 4 * MB }).id)).arrayBuffer();
      expect(f.bytes).toBe(4 * MB);
    }
  }, 180_000);
  afterAll(async () => {
    await server?.dispose();
    await fake?.close();
  });

  it('a 200 MB file upload: the fake receives every byte (same count and hash); the proxy’s RSS grows by < 100 MB', async () => {
    const pid = server.child.pid!;
    const resting = rss(pid);
    const sampler = sampleRss(pid);
    const { data, response } = await client.files
      .create({ file: toStreamingFile(Readable.from(patternChunks('big-upload', SIZE)), 'big-upload.bin', { type: 'application/octet-stream' }), purpose: 'user_data' })
      .withResponse();
    const peak = sampler.stop();

    expect(data).toMatchObject({ object: 'file', bytes: SIZE, filename: 'big-upload.bin' });
    const received = fake.api.recorded('POST', '/v1/files').at(-1)!;
    expect(received.multipart!.files[0]).toMatchObject({ bytes: SIZE, sha256: patternSha256('big-upload', SIZE) });
    expect(fake.api.file(data.id)!.sha256).toBe(received.multipart!.files[0].sha256);

    const rec = await pollRequest(call, response.headers.get('x-request-id')!, (r) => r.status !== 'pending');
    expect(rec).toMatchObject({ status: 'completed', route: '/v1/files', object_id: data.id, request_bytes: received.requestBytes });
    expect(rec.request_content_type).toMatch(/^multipart\/form-data/);
    expect(peak - resting).toBeLessThan(MAX_GROWTH);
  }, 300_000);

  it('a 200 MB content download: the client receives every byte the fake generated; the proxy’s RSS grows by < 100 MB', async () => {
    const seeded = fake.api.seedFile({ bytes: SIZE, filename: 'big-download.bin' });
    const pid = server.child.pid!;
    const resting = rss(pid);
    const sampler = sampleRss(pid);
    const res = await client.files.content(seeded.id);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    const peak = sampler.stop();

    expect(bytes).toBe(SIZE);
    const sent = fake.api.recorded('GET', `/v1/files/${seeded.id}/content`).at(-1)!.response!;
    expect(sent).toMatchObject({ bytes: SIZE, contentType: 'application/octet-stream' });
    expect(hash.digest('hex')).toBe(sent.sha256);
    expect(sent.sha256).toBe(fake.api.file(seeded.id)!.sha256);

    const rec = await pollRequest(call, res.headers.get('x-request-id')!, (r) => r.status !== 'pending');
    expect(rec).toMatchObject({ status: 'completed', route: '/v1/files/{file_id}/content', response_bytes: SIZE, response_body: null });
    expect(peak - resting).toBeLessThan(MAX_GROWTH);
  }, 300_000);
});
