'use strict';
/**
 * A small client on raw node:http for the 1-connection figures and for whatever needs each answer's X-Request-ID:
 * `concurrency` loops, each sending `count` requests one after another on its own keep-alive socket, timing
 * every request to its first body chunk (TTFB) and to its last byte (total).
 */
const http = require('node:http');
const { performance } = require('node:perf_hooks');

function once(agent, { host, port, method, path, headers, body }) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let ttfb;
    const req = http.request({ host, port, method, path, headers, agent }, (res) => {
      res.on('data', () => {
        ttfb ??= performance.now() - t0;
      });
      res.on('end', () => resolve({ status: res.statusCode, id: res.headers['x-request-id'], ttfb: ttfb ?? performance.now() - t0, total: performance.now() - t0 }));
      res.on('error', (err) => resolve({ status: 0, error: err.message }));
    });
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
    req.end(body);
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return undefined;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

/** The median of the defined values (the mean of the middle two of an even count); undefined when there are none. */
function median(values) {
  const v = values.filter((x) => x !== undefined).sort((a, b) => a - b);
  if (!v.length) return undefined;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

function summarise(values) {
  const s = [...values].sort((a, b) => a - b);
  const r3 = (v) => (v === undefined ? undefined : Math.round(v * 1000) / 1000);
  return { p50: r3(percentile(s, 0.5)), p99: r3(percentile(s, 0.99)), mean: r3(s.reduce((a, b) => a + b, 0) / (s.length || 1)), n: s.length };
}

/**
 * @param {{url: string, requests: Array<{method, path, headers, body}>, count: number, concurrency?: number}} opts
 *        each loop walks `requests` round-robin from its own offset (or, with `partition`, its share of them)
 */
async function runSequential({ url, requests, count, concurrency = 1, partition = false }) {
  const u = new URL(url);
  const ttfb = [];
  const total = [];
  const statuses = {};
  const errors = [];
  const ids = [];
  let ok2xx = 0;
  const loop = async (loopIndex) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < count; i++) {
        // partition: every request of the list exactly once over all loops (when count * concurrency covers it)
        const r = requests[(partition ? i * concurrency + loopIndex : loopIndex * 37 + i) % requests.length];
        // a content-length like every SDK sends (node:http would otherwise send the body chunked)
        const headers = r.body === undefined ? r.headers : { ...r.headers, 'content-length': Buffer.byteLength(r.body) };
        const res = await once(agent, { host: u.hostname, port: u.port, ...r, headers });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status >= 200 && res.status < 300) {
          ok2xx++;
          if (res.id) ids.push(res.id);
          ttfb.push(res.ttfb);
          total.push(res.total);
        } else if (errors.length < 5) errors.push(res.error ?? `HTTP ${res.status}`);
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  return { ttfb: summarise(ttfb), total: summarise(total), ok2xx, ids, statuses, errors, sent: count * concurrency };
}

module.exports = { runSequential, summarise, percentile, median };
