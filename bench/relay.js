'use strict';
/**
 * The stream relay's CPU per stream, alone: `StreamRelay` (framing, key scrub, SSE parsing, the record's capture,
 * writes with backpressure) in a real HTTP server, a keep-alive client in the same process, and a record that
 * commits at once — no database, no upstream socket, no load generator. The upstream body gives a stream's events
 * as separate chunks in one tick, as undici does when one socket read holds many HTTP chunks. A change to the relay
 * shows here in CPU time, where the end-to-end benchmark's noise on a shared machine can hide it.
 *
 *   npm run bench:relay -- [--baseline DIR] [--rounds 5] [--streams 10000]   (builds first; Node 24)
 *
 * Each round runs every build once per case, each in a fresh process (pinned to one core where taskset works),
 * alternating, so a machine whose speed drifts weighs on both alike; the report gives each build's median CPU
 * (µs per stream, server and client together) and the median of the per-round ratios. Needs `npm run build`
 * (and the baseline's own build).
 */
const { spawnSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { Readable } = require('node:stream');
const { detectPinning } = require('./lib/procs');
const { median } = require('./lib/seq-client');

const ROOT = path.resolve(__dirname, '..');
require('../scripts/check-node');
const KEY = 'sk-bench-relay-0000000000000000';

function parseArgs(argv) {
  const o = { baseline: undefined, rounds: 5, streams: 10000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--baseline') o.baseline = path.resolve(argv[++i]);
    else if (a === '--rounds') o.rounds = Math.max(1, Number(argv[++i]) | 0);
    else if (a === '--streams') o.streams = Math.max(100, Number(argv[++i]) | 0);
    else if (a === '-h' || a === '--help') {
      console.log('usage: node bench/relay.js [--baseline DIR] [--rounds N] [--streams N]');
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  return o;
}

/** One stream of each endpoint from the fake upstream (20 deltas), as the bytes it sends. */
async function recordStreams(dir) {
  const { startFakeUpstream } = require(path.join(ROOT, 'dist', 'test', 'support', 'fake-upstream.js'));
  const fake = await startFakeUpstream({ deltaCount: 20 });
  const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
  const bodies = {
    chat: { model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] },
    responses: { model: 'gpt-4o-mini', stream: true, input: 'hi' },
  };
  const files = {};
  try {
    for (const [name, body] of Object.entries(bodies)) {
      const res = await fetch(`${fake.url}/${name === 'chat' ? 'chat/completions' : 'responses'}`, { method: 'POST', headers, body: JSON.stringify(body) });
      const bytes = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200 || !bytes.includes('data: ')) throw new Error(`the fake upstream answered ${res.status} for ${name}`);
      files[name] = path.join(dir, `${name}.sse`);
      writeFileSync(files[name], bytes);
    }
  } finally {
    await fake.close();
  }
  return files;
}

/** In a child process: relays `streams` streams of the file through the build at `root`; prints µs of CPU per stream. */
function child(root, name, file, streams) {
  const { StreamRelay } = require(path.join(root, 'dist', 'src', 'proxy', 'stream-relay.js'));
  const { KeyScrubber } = require(path.join(root, 'dist', 'src', 'upstream', 'upstream-errors.js'));
  const bytes = readFileSync(file);
  // the upstream's HTTP chunks: an event each
  const events = [];
  for (let i = 0, from = 0; i < bytes.length - 1; i++) {
    if (bytes[i] === 10 && bytes[i + 1] === 10) {
      events.push(bytes.subarray(from, i + 2));
      from = i + 2;
      i++;
    }
  }
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = new Readable({ read() {} });
      const call = {
        endpoint: name === 'chat' ? 'chat.completions' : 'responses',
        res,
        scrubber: new KeyScrubber(KEY),
        record: { awaitsPendingRow: true, done: false, unrecorded: false, pendingRow: () => Promise.resolve(true) },
        usageUnrequested: name === 'chat',
        clientGone: false,
        finish: async () => {
          call.record.done = true;
          return true;
        },
      };
      new StreamRelay(call, { statusCode: 200, headers: {}, body }, { maxBodyBytes: 1 << 24, streamIdleTimeoutMs: 10_000 }).run().catch(() => {});
      setImmediate(() => {
        for (const e of events) body.push(Buffer.from(e));
        body.push(null);
      });
    });
  });
  server.listen(0, '127.0.0.1', async () => {
    const { port } = server.address();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const one = () =>
      new Promise((resolve, reject) => {
        const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/', agent }, (res) => {
          res.on('data', () => {});
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end('{}');
      });
    const run = async (n) => {
      let sent = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (sent++ < n) await one();
      }));
    };
    await run(Math.ceil(streams / 5)); // warm-up
    const t = process.cpuUsage();
    await run(streams);
    const d = process.cpuUsage(t);
    process.stdout.write(`${((d.user + d.system) / streams).toFixed(1)}\n`);
    process.exit(0);
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-relay-'));
  try {
    const files = await recordStreams(dir);
    const builds = [...(o.baseline ? [['baseline', o.baseline]] : []), ['this', ROOT]];
    const pinning = detectPinning();
    const pin = pinning.ok ? ['taskset', '-c', pinning.sutCore] : [];
    console.log(`stream relay CPU per stream (µs, server and client in one process${pin.length ? `, pinned to core ${pinning.sutCore}` : ''}; ${o.streams} streams of 20 deltas, 8 at a time; ${o.rounds} alternating rounds)`);
    for (const name of Object.keys(files)) {
      const runs = Object.fromEntries(builds.map(([b]) => [b, []]));
      for (let r = 0; r < o.rounds; r++) {
        for (const [b, root] of builds) {
          const args = [...pin, process.execPath, __filename, '--child', root, name, files[name], String(o.streams)];
          const out = spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
          const v = Number(out.stdout.trim());
          if (out.status !== 0 || !Number.isFinite(v)) throw new Error(`${b} ${name}: ${out.stderr || out.stdout}`);
          runs[b].push(v);
        }
      }
      const line = builds.map(([b]) => `${b} ${median(runs[b]).toFixed(1)} (${runs[b].join(' ')})`).join(', ');
      const ratio = o.baseline ? `; this/baseline median of rounds ${median(runs.this.map((v, i) => v / runs.baseline[i])).toFixed(3)}×` : '';
      console.log(`  ${name.padEnd(9)} ${line}${ratio}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') child(process.argv[3], process.argv[4], process.argv[5], Number(process.argv[6]));
else
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
