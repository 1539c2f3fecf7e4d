'use strict';
/**
 * Where a proxied call's time goes: the proxy's phase sums (`openai_proxy_call_phase_seconds_total` and
 * `openai_proxy_call_phases_total` on /metrics, see src/metrics/call-phases.ts) read around a measurement; their
 * difference divided by the calls is each phase's mean in ms. A proxy built before the sums existed gives none.
 */
const PHASES = ['auth', 'body', 'prepare', 'upstream', 'relay', 'record', 'answer'];
const LINE = /^openai_proxy_call_phase(s|_seconds)_total\{([^}]*)\} (\S+)$/;

async function scrape(url) {
  try {
    const res = await fetch(`${url}/metrics`);
    const text = await res.text();
    const out = new Map();
    for (const line of text.split('\n')) {
      const m = LINE.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      const key = `${labels.route}|${labels.stream}|${labels.phase}`;
      const entry = out.get(key) ?? { seconds: 0, calls: 0 };
      if (m[1] === 's') entry.calls = Number(m[3]);
      else entry.seconds = Number(m[3]);
      out.set(key, entry);
    }
    return out;
  } catch {
    return new Map();
  }
}

/** Mean ms per phase of the calls of one route between two scrapes; undefined when the proxy keeps no sums. */
function between(before, after, route, stream) {
  const row = {};
  let any = false;
  for (const phase of PHASES) {
    const key = `${route}|${stream}|${phase}`;
    const a = after.get(key);
    const b = before.get(key) ?? { seconds: 0, calls: 0 };
    if (!a || a.calls - b.calls <= 0) continue;
    row[phase] = Math.round(((a.seconds - b.seconds) / (a.calls - b.calls)) * 1e6) / 1e3;
    any = true;
  }
  if (!any) return undefined;
  row.sum = Math.round(PHASES.reduce((s, p) => s + (row[p] ?? 0), 0) * 1000) / 1000;
  return row;
}

module.exports = { PHASES, scrape, between };
