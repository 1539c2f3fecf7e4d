'use strict';
/**
 * Top self-time functions of a V8 .cpuprofile (as written by `node --cpu-prof`), and self time per area
 * (our code by file, each npm package, node internals, GC).
 *
 *   node bench/profile-summary.js bench/results/proxy.cpuprofile [--top 30]
 */
const { readFileSync } = require('node:fs');

function area(url) {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const src = url.indexOf('/dist/src/');
  if (src >= 0) return 'app:' + url.slice(src + '/dist/src/'.length);
  return url.replace(/^file:\/\//, '');
}

function shortUrl(url) {
  if (!url) return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const src = url.indexOf('/dist/');
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

/** @returns {{totalMs, busyMs, functions: Array, areas: Array}} times in ms, sorted by self time */
function summarise(profile, top = 30) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const { samples, timeDeltas } = profile;
  // timeDeltas[i + 1] is the time spent in samples[i]
  for (let i = 0; i < samples.length; i++) {
    const dt = (timeDeltas[i + 1] ?? 0) / 1000;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
  }
  const fns = new Map();
  const areas = new Map();
  let totalMs = 0;
  let idleMs = 0;
  for (const [id, ms] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    totalMs += ms;
    if (functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const name = functionName || '(anonymous)';
    const key = url ? `${name} ${shortUrl(url)}:${lineNumber + 1}` : name;
    fns.set(key, (fns.get(key) ?? 0) + ms);
    const a = name === '(garbage collector)' ? '(garbage collector)' : name === '(program)' ? '(program)' : area(url);
    areas.set(a, (areas.get(a) ?? 0) + ms);
  }
  const busyMs = totalMs - idleMs;
  const rows = (m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, self_ms: Math.round(ms), pct_of_busy: Math.round((ms / busyMs) * 1000) / 10 }));
  return { totalMs: Math.round(totalMs), busyMs: Math.round(busyMs), functions: rows(fns), areas: rows(areas) };
}

function format(summary) {
  const lines = [`CPU profile: ${summary.busyMs} ms busy of ${summary.totalMs} ms sampled`, '', 'self time by area:'];
  for (const r of summary.areas) lines.push(`  ${String(r.pct_of_busy).padStart(5)}%  ${String(r.self_ms).padStart(7)} ms  ${r.name}`);
  lines.push('', 'top functions by self time:');
  for (const r of summary.functions) lines.push(`  ${String(r.pct_of_busy).padStart(5)}%  ${String(r.self_ms).padStart(7)} ms  ${r.name}`);
  return lines.join('\n');
}

module.exports = { summarise, format };

if (require.main === module) {
  const args = process.argv.slice(2);
  const topIdx = args.indexOf('--top');
  const file = args.find((a, i) => !a.startsWith('--') && (topIdx < 0 || i !== topIdx + 1));
  const top = topIdx >= 0 ? Number(args[topIdx + 1]) : 30;
  if (!file) {
    console.error('usage: node bench/profile-summary.js <file.cpuprofile> [--top N] [--json]');
    process.exit(1);
  }
  const summary = summarise(JSON.parse(readFileSync(file, 'utf8')), top);
  console.log(args.includes('--json') ? JSON.stringify(summary, null, 2) : format(summary));
}
