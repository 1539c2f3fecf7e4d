'use strict';
/**
 * The benchmark: the fake upstream alone (direct), a minimal Node pass-through (floor) and the built proxy, measured
 * side by side in one run. See bench/README.md.
 *
 *   npm run bench                      full run (~10 s per measurement)
 *   node bench/run.js --quick          short run
 *   node bench/run.js --smoke          a few seconds, for CI: exit 1 when something is broken, targets not enforced
 */
const os = require('node:os');
const path = require('node:path');
const { existsSync, mkdirSync, mkdtempSync, writeFileSync, readFileSync, rmSync } = require('node:fs');
const procs = require('./lib/procs');
const setup = require('./lib/setup');
const { runSequential, median } = require('./lib/seq-client');
const phases = require('./lib/phases');
const wrkLib = require('./lib/wrk');
const { PgCpu } = require('./lib/pg-cpu');
const { execFileSync } = require('node:child_process');

/** The commit a checkout is at (`git rev-parse --short HEAD`), for the report; `unknown` outside git. */
function gitHead(dir) {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const ROOT = path.resolve(__dirname, '..');
const FAKE = path.join(ROOT, 'dist', 'test', 'support', 'fake-upstream.js');
const RESULTS = path.join(__dirname, 'results');

// ------------------------------------------------------------------------------------------------ options

const HELP = `usage: node bench/run.js [--smoke | --quick] [options]
  --smoke                 every case very short, targets reported but not enforced (CI)
  --quick                 short run (3 s per measurement)
  --duration S            seconds per 50-connection (wrk) measurement (default 10)
  --warmup S              seconds of warm-up load before each measurement (default 2)
  --connections N         connections for the throughput runs (default 50)
  --seq N                 sequential requests for the 1-connection latency / TTFB runs (default 2000)
  --targets LIST          direct,floor,proxy (default all three)
  --cases LIST            responses-json,responses-sse,chat-json,chat-sse (default all)
  --users N --orgs N      X-User-IDs and organizations the proxy load is spread over (default 200 / 4)
  --setup auto|cli|sql    how organizations, keys and tokens are created (default auto: the CLI when built)
  --no-realistic          skip the realistic streaming case (200 ms to first token, 20 ms between events)
  --no-analytics          skip the persona analytics case
  --profile               run the proxy and the floor with --cpu-prof and print their top self-time functions
  --pg-setting K=V        experiment: ALTER DATABASE bench_<ts> SET K = V before the proxy starts (repeatable),
                          e.g. --pg-setting synchronous_commit=off
  --proxy-env K=V         run the proxy with this environment variable (repeatable), e.g. --proxy-env RECORD_WRITE=after_answer
  --baseline-env K=V      run the baseline with this environment variable (repeatable, after --proxy-env's); with
                          --baseline . (this checkout) it compares two settings of one build in one run
  --baseline DIR          also measure the proxy built in another checkout DIR (its own dist/, e.g. a git worktree of
                          the commit before a change), in the same run and on the same core: the report adds
                          "baseline" and "proxy vs baseline" columns — before/after figures from one run
  --ab-rounds N           with --baseline: after each case, N rounds of a wrk run on the baseline and one on the proxy
                          (--ab-seconds S each, default 3; each round in the other order), alternating so that a machine
                          whose speed drifts weighs on both alike; reports each round's proxy/baseline ratios of req/s and CPU per request and their
                          medians
  --ab-seconds S          seconds of each --ab-rounds and --floor-rounds run (default 3)
  --floor-rounds N        after each case, N rounds of a wrk run on the floor and one on the proxy, alternating: the
                          proxy/floor verdict is the median of the rounds' ratios (default 6 in a full run, else 0)
  --proxy-node-flags "F"  experiment: extra node flags for the proxy, e.g. "--max-semi-space-size=8"
  --strict                exit 2 when a target FAILs (broken runs always exit 1)
  --out FILE              results JSON (default bench/results/latest.json; smoke.json / quick.json for those modes)
Environment: DATABASE_URL (PostgreSQL server for a fresh bench_<ts> database; unset: embedded database).`;

function parseArgs(argv) {
  const o = {
    mode: 'full',
    duration: undefined,
    warmup: undefined,
    connections: 50,
    seq: undefined,
    targets: ['direct', 'floor', 'proxy'],
    cases: ['responses-json', 'responses-sse', 'chat-json', 'chat-sse'],
    users: 200,
    orgs: 4,
    setup: 'auto',
    realistic: true,
    analytics: true,
    profile: false,
    strict: false,
    pgSettings: {},
    proxyNodeFlags: [],
    proxyEnv: {},
    baselineEnv: {},
    baseline: undefined,
    abRounds: 0,
    abSeconds: 3,
    floorRounds: undefined,
    out: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const num = () => {
      const v = Number(next());
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a} needs a non-negative number`);
      return v;
    };
    const list = (allowed) => {
      const v = next().split(',').map((s) => s.trim()).filter(Boolean);
      for (const x of v) if (!allowed.includes(x)) throw new Error(`${a}: unknown ${x} (one of ${allowed.join(', ')})`);
      return v;
    };
    switch (a) {
      case '--smoke': o.mode = 'smoke'; break;
      case '--quick': o.mode = 'quick'; break;
      case '--duration': o.duration = num(); break;
      case '--warmup': o.warmup = num(); break;
      case '--connections': o.connections = Math.max(1, Math.floor(num())); break;
      case '--seq': o.seq = Math.max(1, Math.floor(num())); break;
      case '--targets': o.targets = list(['direct', 'floor', 'proxy']); break;
      case '--cases': o.cases = list(Object.keys(CASES)); break;
      case '--users': o.users = Math.max(1, Math.floor(num())); break;
      case '--orgs': o.orgs = Math.max(1, Math.floor(num())); break;
      case '--setup': o.setup = next(); if (!['auto', 'cli', 'sql'].includes(o.setup)) throw new Error('--setup: auto, cli or sql'); break;
      case '--no-realistic': o.realistic = false; break;
      case '--no-analytics': o.analytics = false; break;
      case '--profile': o.profile = true; break;
      case '--strict': o.strict = true; break;
      case '--proxy-node-flags': o.proxyNodeFlags = next().split(/\s+/).filter(Boolean); break;
      case '--proxy-env': {
        const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(next());
        if (!m) throw new Error('--proxy-env needs NAME=value');
        o.proxyEnv[m[1]] = m[2];
        break;
      }
      case '--baseline-env': {
        const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(next());
        if (!m) throw new Error('--baseline-env needs NAME=value');
        o.baselineEnv[m[1]] = m[2];
        break;
      }
      case '--pg-setting': {
        const m = /^([a-z_.]+)=(.+)$/.exec(next());
        if (!m) throw new Error('--pg-setting needs name=value');
        o.pgSettings[m[1]] = m[2];
        break;
      }
      case '--out': o.out = path.resolve(next()); break;
      case '--baseline': o.baseline = path.resolve(next()); break;
      case '--ab-rounds': o.abRounds = Math.floor(num()); break;
      case '--ab-seconds': o.abSeconds = Math.max(1, Math.floor(num())); break;
      case '--floor-rounds': o.floorRounds = Math.max(0, Math.floor(num())); break;
      case '-h': case '--help': console.log(HELP); process.exit(0); break; // eslint-disable-line no-fallthrough
      default: throw new Error(`unknown option ${a}\n${HELP}`);
    }
  }
  const presets = {
    full: { duration: 10, warmup: 2, seq: 2000, floorRounds: 6, realistic: [8, 4], analytics: { exchanges: 100_000, calls: 30 } },
    quick: { duration: 3, warmup: 1, seq: 500, realistic: [4, 2], analytics: { exchanges: 100_000, calls: 10 } },
    smoke: { duration: 0.5, warmup: 0, seq: 30, realistic: [2, 1], analytics: { exchanges: 2_000, calls: 3 } },
  }[o.mode];
  // the CLI boots the whole app once per command: seconds a smoke run cannot spare
  if (o.setup === 'auto' && o.mode === 'smoke') o.setup = 'sql';
  o.duration ??= presets.duration;
  o.warmup ??= presets.warmup;
  o.floorRounds ??= presets.floorRounds ?? 0;
  o.seq ??= presets.seq;
  o.realisticShape = presets.realistic;
  o.analyticsSize = presets.analytics;
  // a smoke or quick run never replaces the full run's figures
  o.out ??= path.join(RESULTS, o.mode === 'full' ? 'latest.json' : `${o.mode}.json`);
  return o;
}

// ------------------------------------------------------------------------------------------------ cases

const PROMPT = 'Write one short sentence about benchmarks.';
const CASES = {
  'responses-json': { path: '/v1/responses', stream: false, body: { model: 'gpt-4o-mini', input: PROMPT } },
  'responses-sse': { path: '/v1/responses', stream: true, body: { model: 'gpt-4o-mini', input: PROMPT, stream: true } },
  'chat-json': { path: '/v1/chat/completions', stream: false, body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] } },
  'chat-sse': {
    path: '/v1/chat/completions',
    stream: true,
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true },
  },
};

/** One request per bench user (its org's token, its X-User-ID); the same list goes to every target. */
function requestsFor(c, users) {
  const body = JSON.stringify(c.body);
  return users.map((u) => ({
    method: 'POST',
    path: c.path,
    headers: { authorization: `Bearer ${u.org.token}`, 'x-user-id': u.userId, 'content-type': 'application/json' },
    body,
  }));
}

// ------------------------------------------------------------------------------------------------ load

const PROFILE_DIR = path.join(RESULTS, 'profile');

/** --profile: the directory a system under test writes `<name>.cpuprofile` to at its exit, its previous profile removed. */
function freshProfile(name) {
  mkdirSync(PROFILE_DIR, { recursive: true });
  rmSync(path.join(PROFILE_DIR, `${name}.cpuprofile`), { force: true });
  return PROFILE_DIR;
}

/** The direct case must reach this multiple of the floor's req/s, or the load generator is what the floor measures. */
const LOAD_GENERATOR_MIN_RATIO = 2.5;

/**
 * One wrk run against `url` (pinned to the load core), with how busy each core was and how much CPU wrk itself used:
 * a load generator whose own core is saturated measures itself.
 */
async function loadRun(ctx, url, scriptFile, duration) {
  const before = procs.coreTicks();
  const r = await wrkLib.runWrk({ wrk: ctx.wrk, url, scriptFile, connections: ctx.connections, duration, pinning: ctx.pinning, core: ctx.pinning.loadCore });
  const after = procs.coreTicks();
  if (ctx.pinning.ok) {
    r.sutCoreBusyPct = procs.coreBusyPct(before, after, ctx.pinning.sutCore);
    r.loadCoreBusyPct = procs.coreBusyPct(before, after, ctx.pinning.loadCore);
  }
  r.wrkCpuPct = r.cpuSeconds !== undefined && r.seconds ? Math.round((r.cpuSeconds / r.seconds) * 100) : undefined;
  return r;
}

/**
 * `other` (the baseline, or the floor) and the proxy in alternating wrk runs: the proxy/other ratio of each round
 * compares two runs seconds apart, and the median over the rounds is what a machine whose speed drifts over minutes
 * still lets one compare (the main runs of a case are a minute apart: on a shared machine the floor's own throughput
 * moved 1.5× between runs of one day).
 */
async function alternatingRounds(ctx, name, c, targets, requestsOf, scriptDir, opts, pgCpu, other, count) {
  const rounds = [];
  const scripts = {};
  for (const t of [other, 'proxy']) scripts[t] = wrkLib.writeScript(path.join(scriptDir, `${name}.${t}.ab.lua`), requestsOf(c, t));
  const ratio = (a, b) => (a && b ? r3(a / b) : undefined);
  for (let i = 0; i < count; i++) {
    const round = {};
    // each round in the other order (baseline first, then proxy first, …), so that neither side always follows the
    // other's run. It does not remove what sets two instances apart within one run: the same build on both sides
    // (chat SSE, 12 rounds) gave one side 0.90× then 1.15× the other's req/s and 1.22× then 0.74× its PostgreSQL CPU
    // per request, alike in nearly every round of a run — compare several runs, not the rounds of one
    for (const t of i % 2 ? ['proxy', other] : [other, 'proxy']) {
      // PostgreSQL's CPU too: the backends serving this target's own database (the server's shared processes are not told apart)
      const pgSample = () => (pgCpu && targets[t].dbName ? pgCpu.sample(targets[t].dbName) : undefined);
      const pg0 = await pgSample();
      const cpu0 = procs.cpuSeconds(targets[t].pid);
      const load = await loadRun(ctx, targets[t].url, scripts[t], opts.abSeconds);
      const cpu1 = procs.cpuSeconds(targets[t].pid);
      const pg1 = await pgSample();
      const pg = pg0 && pg1 ? PgCpu.between(pg0, pg1) : undefined;
      round[t] = {
        rps: load.rps,
        cpu_ms_per_request: cpu0 !== undefined && load.total ? r3(((cpu1 - cpu0) * 1000) / load.total) : undefined,
        pg_cpu_ms_per_request: pg && load.total ? r3((pg.own * 1000) / load.total) : undefined,
      };
    }
    round.rps_ratio = r3(round.proxy.rps / round[other].rps);
    round.cpu_ratio = ratio(round.proxy.cpu_ms_per_request, round[other].cpu_ms_per_request);
    round.pg_cpu_ratio = ratio(round.proxy.pg_cpu_ms_per_request, round[other].pg_cpu_ms_per_request);
    rounds.push(round);
    const pgText = round.pg_cpu_ratio !== undefined ? `, PostgreSQL CPU per request ${round.pg_cpu_ratio}×` : '';
    log(`${name}: round ${i + 1}/${count}: proxy/${other} req/s ${round.rps_ratio}×, CPU per request ${round.cpu_ratio}×${pgText}`);
  }
  const medianOf = (key) => {
    const values = rounds.map((r) => r[key]).filter((v) => v !== undefined);
    return values.length ? r3(median(values)) : undefined;
  };
  return {
    rounds,
    seconds: opts.abSeconds,
    rps_ratio_median: medianOf('rps_ratio'),
    cpu_ratio_median: medianOf('cpu_ratio'),
    pg_cpu_ratio_median: medianOf('pg_cpu_ratio'),
  };
}

// ------------------------------------------------------------------------------------------------ helpers

const r2 = (v) => (v === undefined || v === null || Number.isNaN(v) ? undefined : Math.round(v * 100) / 100);
const r3 = (v) => (v === undefined || v === null || Number.isNaN(v) ? undefined : Math.round(v * 1000) / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const T0 = Date.now();
function log(msg) {
  process.stderr.write(`[bench +${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
}

function table(headers, rows) {
  const cells = [headers, ...rows].map((r) => r.map((c) => (c === undefined || c === null ? '–' : String(c))));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

function markdown(headers, rows) {
  const cell = (c) => (c === undefined || c === null ? '–' : String(c));
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpu_model: cpus[0]?.model?.trim(),
    cores: cpus.length,
    memory_gb: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    load_average_at_start: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

// ------------------------------------------------------------------------------------------------ main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (Number(process.versions.node.split('.')[0]) < 24) throw new Error(`Node 24 needed (this is ${process.version}); run through npm run bench`);
  if (!existsSync(FAKE)) throw new Error('dist/test/support/fake-upstream.js is missing: run npm run build');
  mkdirSync(RESULTS, { recursive: true });
  const wrk = wrkLib.ensureWrk(log);
  const scriptDir = mkdtempSync(path.join(os.tmpdir(), 'proxy-bench-wrk-'));
  procs.removeDirLater(scriptDir);

  const broken = [];
  const results = {
    machine: machineInfo(),
    mode: opts.mode,
    settings: {
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      connections: opts.connections,
      sequential_requests: opts.seq,
      users: opts.users,
      organizations: opts.orgs,
      delta_events: 20,
    },
    pinning: undefined,
    load_generator: undefined,
    database: undefined,
    cases: {},
    realistic_streaming: undefined,
    analytics: undefined,
    lost_exchanges: {},
    peak_rss_mb: {},
    targets: [],
    broken,
  };

  const busy = os.loadavg()[0];
  if (busy > os.cpus().length * 0.25) {
    log(`WARNING: load average ${busy.toFixed(2)} on ${os.cpus().length} cores — other work on this machine will distort the figures`);
  }
  const pinning = procs.detectPinning();
  if (pinning.ok && !procs.pinSelf(pinning.loadCore)) Object.assign(pinning, { ok: false, reason: 'could not pin the bench process' });
  results.pinning = pinning.ok
    ? { enabled: true, system_under_test_core: 0, load_and_upstream_core: 1 }
    : { enabled: false, reason: pinning.reason };
  log(pinning.ok ? 'pinning: system under test on core 0, load generator + fake upstream on core 1' : `pinning OFF: ${pinning.reason}`);
  results.load_generator = {
    tool: 'wrk',
    version: wrkLib.version(wrk),
    threads: 1,
    connections: opts.connections,
    requests: 'one per bench user (its token and X-User-ID), handed out in turn',
    direct_over_floor_required: LOAD_GENERATOR_MIN_RATIO,
  };

  // -- upstream, floor, proxy
  const fake = await procs.startAndWaitForLine(
    'fake-upstream',
    process.execPath,
    [FAKE, '--port', '0', '--delta-count', '20', '--first-byte-ms', '0', '--event-interval-ms', '0', '--max-recorded', '0'],
    /listening on (http:\/\/\S+)/,
    { core: pinning.loadCore, pinning },
  );
  const upstreamUrl = fake.match[1]; // …/v1
  const upstreamOrigin = new URL(upstreamUrl).origin;
  // "direct" is the upstream alone as the system under test: its own instance on the system-under-test core, like
  // the floor and the proxy, so that its figure is what wrk can drive from the load core (the load-generator check)
  // and its latency crosses the same cores as theirs. It writes an unpaced stream in one write (--burst): written
  // event by event, as the upstream the floor and the proxy call does, twenty events cost it about what relaying
  // them costs the floor, and the check would measure the simulator rather than wrk. And it answers a request it has
  // answered before with the same bytes (--replay): building a stream's twenty events, each with its own JSON text,
  // still held its core at 100% at 1.8x the floor's streams, so the check failed on the simulator's CPU, not wrk's
  const direct = opts.targets.includes('direct')
    ? await procs.startAndWaitForLine(
        'fake-upstream-direct',
        process.execPath,
        [FAKE, '--port', '0', '--delta-count', '20', '--first-byte-ms', '0', '--event-interval-ms', '0', '--max-recorded', '0', '--burst', '--replay'],
        /listening on (http:\/\/\S+)/,
        { core: pinning.sutCore, pinning },
      )
    : undefined;
  const directOrigin = direct ? new URL(direct.match[1]).origin : undefined;
  const setFakeOptions = async (o) => {
    for (const origin of [upstreamOrigin, directOrigin].filter(Boolean)) {
      const res = await fetch(`${origin}/__fake/options`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(o) });
      if (res.status !== 200) throw new Error(`fake upstream options: HTTP ${res.status}`);
      await res.arrayBuffer();
    }
  };
  log(`fake upstream at ${upstreamUrl}${direct ? `; the direct one at ${directOrigin}` : ''}`);

  const targets = {};
  let floorChild;
  if (direct) targets.direct = { url: directOrigin, pid: direct.child.pid };
  if (opts.targets.includes('floor')) {
    const floor = await procs.startAndWaitForLine(
      'floor',
      process.execPath,
      [...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${freshProfile('floor')}`, '--cpu-prof-name=floor.cpuprofile'] : []), path.join(__dirname, 'floor.js'), '--upstream', upstreamUrl],
      /listening on (http:\/\/\S+)/,
      { core: pinning.sutCore, pinning },
    );
    targets.floor = { url: floor.match[1], pid: floor.child.pid };
    floorChild = floor.child;
  }

  let proxy;
  let pgCpu;
  let users = Array.from({ length: opts.users }, (_, i) => ({ userId: `bench-user-${i}`, org: { token: 'none' } }));
  if (opts.targets.includes('proxy')) {
    const profileDir = opts.profile ? freshProfile('proxy') : undefined;
    proxy = await setup.startProxy({ databaseUrl: process.env.DATABASE_URL, upstreamUrl, pinning, cpuProfDir: profileDir, dbSettings: opts.pgSettings, nodeFlags: opts.proxyNodeFlags, extraEnv: opts.proxyEnv });
    if (opts.proxyNodeFlags.length) results.proxy_node_flags = opts.proxyNodeFlags;
    if (Object.keys(opts.proxyEnv).length) results.proxy_env = opts.proxyEnv;
    if (Object.keys(opts.baselineEnv).length) results.baseline_env = opts.baselineEnv;
    results.database = { mode: proxy.mode, ...(proxy.dbName ? { name: proxy.dbName } : {}) };
    if (Object.keys(opts.pgSettings).length) {
      if (proxy.mode !== 'postgresql') throw new Error('--pg-setting needs DATABASE_URL');
      results.database.settings = opts.pgSettings;
    }
    log(`proxy at ${proxy.url} (${proxy.mode} database${proxy.dbName ? ` ${proxy.dbName}` : ''})`);
    const made = await setup.createOrganizations(proxy, { orgs: opts.orgs, upstreamUrl, how: opts.setup });
    results.database.setup = made.via;
    log(`${made.orgs.length} organizations with org keys and tokens (via ${made.via})`);
    users = setup.benchUsers(made.orgs, opts.users);
    proxy.orgs = made.orgs;
    results.organizations = made.orgs.map(({ id, name }) => ({ id, name }));
    // Every user once (first sight records the user), through a route that stores no exchange.
    const prime = await runSequential({
      url: proxy.url,
      requests: users.map((u) => ({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${u.org.token}`, 'x-user-id': u.userId } })),
      count: Math.ceil(users.length / 8),
      concurrency: 8,
      partition: true,
    });
    if (prime.ok2xx !== prime.sent) throw new Error(`priming users through GET /v1/models failed: ${JSON.stringify(prime.statuses)} ${prime.errors.join('; ')}`);
    for (const name of opts.cases) {
      const c = CASES[name];
      const probe = await runSequential({ url: proxy.url, requests: requestsFor(c, users.slice(0, 1)), count: 1 });
      if (probe.ok2xx !== 1) {
        throw new Error(
          `the proxy answered POST ${c.path} (${name}) with ${JSON.stringify(probe.statuses)} ${probe.errors.join('; ')} — are the proxy routes in the build? (--targets direct,floor runs without it)`,
        );
      }
      proxy.probeIds = [...(proxy.probeIds ?? []), ...probe.ids];
    }
    targets.proxy = { url: proxy.url, pid: proxy.child.pid, users };
    if (proxy.mode === 'postgresql') {
      const opened = await PgCpu.open(process.env.DATABASE_URL);
      pgCpu = opened.pgCpu;
      targets.proxy.dbName = proxy.dbName;
      results.database.cpu = pgCpu
        ? {
            measured: true,
            postmaster_pid: pgCpu.postmasterPid,
            pg_cpu_ms_per_request: "utime+stime of the PostgreSQL processes serving the proxy's database (its backends) and of the server's shared background processes (WAL writer, checkpointer, …) during the 50-connection run, per request",
            pg_server_cpu_ms_per_request: "the same for every process of the server (the postmaster's whole tree, those that ended during the run included): other databases' traffic counts there too",
          }
        : { measured: false, reason: opened.reason };
    } else {
      results.database.cpu = { measured: false, reason: "embedded database: it runs inside the proxy's process, so its CPU is part of the proxy's CPU figure" };
    }
    results.peak_rss_mb.proxy_before_load = procs.peakRssMb(proxy.child.pid);
  }
  let baseline;
  if (opts.baseline && targets.proxy) {
    baseline = await setup.startProxy({ root: opts.baseline, databaseUrl: process.env.DATABASE_URL, upstreamUrl, pinning, dbSettings: opts.pgSettings, nodeFlags: opts.proxyNodeFlags, extraEnv: { ...opts.proxyEnv, ...opts.baselineEnv } });
    const made = await setup.createOrganizations(baseline, { orgs: opts.orgs, upstreamUrl, how: opts.setup });
    const baselineUsers = setup.benchUsers(made.orgs, opts.users);
    const prime = await runSequential({
      url: baseline.url,
      requests: baselineUsers.map((u) => ({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${u.org.token}`, 'x-user-id': u.userId } })),
      count: Math.ceil(baselineUsers.length / 8),
      concurrency: 8,
      partition: true,
    });
    if (prime.ok2xx !== prime.sent) throw new Error(`priming the baseline's users failed: ${JSON.stringify(prime.statuses)} ${prime.errors.join('; ')}`);
    targets.baseline = { url: baseline.url, pid: baseline.child.pid, users: baselineUsers, dbName: baseline.dbName };
    results.baseline = { dir: opts.baseline, commit: gitHead(opts.baseline), database: baseline.dbName ?? baseline.mode };
    log(`baseline proxy (${opts.baseline}, ${results.baseline.commit}) at ${baseline.url}`);
  }
  const order = ['direct', 'floor', 'baseline', 'proxy'].filter((t) => targets[t]);
  /** The requests of a case for one target: a proxy's carry its own organizations' tokens. */
  const requestsOf = (c, t) => requestsFor(c, targets[t].users ?? users);

  // -- the four cases
  const ctx = { wrk, connections: opts.connections, pinning };
  for (const name of opts.cases) {
    const c = CASES[name];
    const caseResult = {};
    let proxyRequests = 0;
    const dbCounters = targets.proxy && opts.mode !== 'smoke'; // needs a second's wait per case; meaningless in a smoke run
    if (dbCounters && !proxy.lastStats) {
      await sleep(1100); // pg_stat_database is flushed about once a second: let the set-up traffic land first
      proxy.lastStats = await setup.dbStats(proxy.dbUrl);
    }
    const stats0 = proxy?.lastStats;
    for (const t of order) {
      const target = targets[t];
      const requests = requestsOf(c, t);
      const script = wrkLib.writeScript(path.join(scriptDir, `${name}.${t}.lua`), requests);
      const isProxy = t === 'proxy';
      const pgSample = () => (pgCpu && target.dbName ? pgCpu.sample(target.dbName) : undefined);
      log(`${name}: ${t}`);
      const rssReset = procs.resetPeakRss(target.pid);
      // with wrk there are no X-Request-IDs to collect: the proxy's rows per status are counted around its runs instead
      const rows0 = isProxy ? await setup.countByStatus(proxy.dbUrl) : undefined;
      let wrk2xx = 0;
      let wrkRuns = 0;
      if (opts.warmup > 0) {
        const w = await loadRun(ctx, target.url, script, opts.warmup);
        wrk2xx += w.ok2xx;
        wrkRuns++;
        if (isProxy) proxyRequests += w.total;
        if (w.non2xx || w.errors || w.timeouts) broken.push(`${name}/${t} warm-up: ${w.non2xx} non-2xx, ${w.errors} socket errors, ${w.timeouts} timeouts`);
      }
      const keepsPhases = t === 'proxy' || t === 'baseline';
      const phaseRoute = [c.path === '/v1/responses' ? 'responses' : 'chat.completions', c.stream ? 'true' : 'false'];
      const ph0 = keepsPhases ? await phases.scrape(target.url) : undefined;
      const pg0 = await pgSample();
      const cpu0 = procs.cpuSeconds(target.pid);
      const load = await loadRun(ctx, target.url, script, opts.duration);
      const cpu1 = procs.cpuSeconds(target.pid);
      const pg1 = await pgSample();
      const pg = pg0 && pg1 ? PgCpu.between(pg0, pg1) : undefined;
      const ph1 = keepsPhases ? await phases.scrape(target.url) : undefined;
      const perRequest = (seconds) => (seconds !== undefined && load.total ? r3((seconds * 1000) / load.total) : undefined);
      wrk2xx += load.ok2xx;
      wrkRuns++;
      if (isProxy) {
        proxyRequests += load.total;
        results.lost_exchanges[`${name} @${opts.connections}`] = await countCheck(proxy, rows0, wrk2xx, wrkRuns * opts.connections, `${name} @${opts.connections}`, broken);
      }
      const seq = await runSequential({ url: target.url, requests, count: opts.seq });
      const ph2 = keepsPhases ? await phases.scrape(target.url) : undefined;
      if (isProxy) {
        proxyRequests += seq.sent;
        results.lost_exchanges[`${name} @1`] = await lostCheck(proxy, seq.ids, seq.ok2xx, `${name} @1`, broken);
      }
      if (load.non2xx || load.errors || load.timeouts) broken.push(`${name}/${t}: ${load.non2xx} non-2xx, ${load.errors} socket errors, ${load.timeouts} timeouts at ${opts.connections} connections`);
      if (seq.ok2xx !== seq.sent) broken.push(`${name}/${t}: sequential ${JSON.stringify(seq.statuses)} ${seq.errors.join('; ')}`);
      const rss = procs.peakRssMb(target.pid);
      target.peakRss = Math.max(target.peakRss ?? 0, rss ?? 0);
      caseResult[t] = {
        rps: load.rps,
        p50_ms: r3(load.p50),
        p99_ms: r3(load.p99),
        requests: load.total,
        non_2xx: load.non2xx,
        errors: load.errors,
        timeouts: load.timeouts,
        cpu_ms_per_request: cpu0 !== undefined ? perRequest(cpu1 - cpu0) : undefined,
        ...(pg ? { pg_cpu_ms_per_request: perRequest(pg.own), pg_server_cpu_ms_per_request: perRequest(pg.server) } : {}),
        wrk_cpu_pct: load.wrkCpuPct,
        sut_core_busy_pct: load.sutCoreBusyPct,
        load_core_busy_pct: load.loadCoreBusyPct,
        c1_p50_ms: seq.total.p50,
        c1_p99_ms: seq.total.p99,
        c1_ttfb_p50_ms: seq.ttfb.p50,
        c1_ttfb_p99_ms: seq.ttfb.p99,
        rss_mb: rss,
        rss_scope: rssReset ? 'case' : 'process',
        ...(keepsPhases ? { phases_ms: { c1: phases.between(ph1, ph2, ...phaseRoute), cN: phases.between(ph0, ph1, ...phaseRoute) } } : {}),
      };
    }
    if (opts.abRounds > 0 && targets.baseline && targets.proxy) caseResult.ab = await alternatingRounds(ctx, name, c, targets, requestsOf, scriptDir, opts, pgCpu, 'baseline', opts.abRounds);
    if (opts.floorRounds > 0 && targets.floor && targets.proxy) caseResult.floor_rounds = await alternatingRounds(ctx, name, c, targets, requestsOf, scriptDir, opts, pgCpu, 'floor', opts.floorRounds);
    caseResult.load_generator = loadGeneratorCheck(caseResult);
    if (caseResult.load_generator.bound) {
      log(`${name}: LOAD-GENERATOR BOUND — direct ${caseResult.load_generator.direct_over_floor}× the floor (< ${LOAD_GENERATOR_MIN_RATIO}×): no proxy/floor ratio`);
    }
    results.cases[name] = caseResult;
    if (targets.proxy) {
      if (dbCounters) await sleep(1100); // pg_stat_database is flushed about once a second
      const stats1 = dbCounters ? await setup.dbStats(proxy.dbUrl) : undefined;
      proxy.lastStats = stats1;
      if (stats0 && stats1 && proxyRequests) {
        const per = (k) => r2((stats1[k] - stats0[k]) / proxyRequests);
        Object.assign(caseResult.proxy, {
          db_transactions_per_request: per('xacts'),
          db_rows_fetched_per_request: per('fetched'),
          db_rows_inserted_per_request: per('inserted'),
          db_rows_updated_per_request: per('updated'),
        });
      }
    }
  }

  // -- realistic streaming: first token after 200 ms, 20 ms between events
  if (opts.realistic && order.length > 0) {
    const [concurrency, count] = opts.realisticShape;
    const names = opts.mode === 'smoke' ? ['responses-sse'] : ['responses-sse', 'chat-sse'];
    results.realistic_streaming = { first_byte_ms: 200, event_interval_ms: 20, concurrency, requests_per_target: concurrency * count, baseline: Boolean(targets.baseline), cases: {} };
    await setFakeOptions({ firstByteMs: 200, eventIntervalMs: 20 });
    try {
      for (const name of names) {
        const out = {};
        const ids = [];
        let ok = 0;
        for (const t of order) {
          log(`realistic ${name}: ${t}`);
          const seq = await runSequential({ url: targets[t].url, requests: requestsOf(CASES[name], t), count, concurrency });
          if (seq.ok2xx !== seq.sent) broken.push(`realistic ${name}/${t}: ${JSON.stringify(seq.statuses)} ${seq.errors.join('; ')}`);
          if (t === 'proxy') (ids.push(...seq.ids), (ok += seq.ok2xx));
          out[t] = { ttfb_p50_ms: r2(seq.ttfb.p50), ttfb_p99_ms: r2(seq.ttfb.p99), total_p50_ms: r2(seq.total.p50), total_p99_ms: r2(seq.total.p99) };
        }
        results.realistic_streaming.cases[name] = out;
        if (targets.proxy) results.lost_exchanges[`realistic ${name}`] = await lostCheck(proxy, ids, ok, `realistic ${name}`, broken);
      }
    } finally {
      await setFakeOptions({ firstByteMs: 0, eventIntervalMs: 0 });
    }
  }

  // -- persona analytics over 100,000 exchanges (bench/analytics.js, when present)
  if (opts.analytics && proxy) {
    const file = path.join(__dirname, 'analytics.js');
    if (existsSync(file)) {
      log(`persona analytics over ${opts.analyticsSize.exchanges} exchanges`);
      try {
        const { runAnalyticsBench } = require(file);
        const org = proxy.orgs[0];
        results.analytics = await runAnalyticsBench({
          databaseUrl: proxy.dbUrl,
          baseUrl: proxy.url,
          orgId: org.id,
          token: org.token,
          userId: users[0].userId,
          jwtSecret: proxy.jwtSecret,
          exchanges: opts.analyticsSize.exchanges,
          calls: opts.analyticsSize.calls,
        });
      } catch (err) {
        results.analytics = { error: err instanceof Error ? err.message : String(err) };
        broken.push(`analytics: ${results.analytics.error}`);
      }
    } else {
      results.analytics = { skipped: 'bench/analytics.js not present' };
    }
  }

  // the highest of the per-case peaks and the peak since the last case (realistic streaming, analytics)
  for (const t of order) {
    const last = procs.peakRssMb(targets[t].pid);
    results.peak_rss_mb[t] = Math.max(targets[t].peakRss ?? 0, last ?? 0, t === 'proxy' ? (results.peak_rss_mb.proxy_before_load ?? 0) : 0) || undefined;
  }

  // -- the CPU profiles are written when the processes exit: the floor's, under the same load (what the proxy spends
  // beyond it is the price of its features), and the proxy's
  if (opts.profile) {
    const summaryOf = async (name, child, stopMs) => {
      await procs.stop(child, stopMs);
      const file = path.join(PROFILE_DIR, `${name}.cpuprofile`);
      if (!existsSync(file)) return void broken.push(`profile: no .cpuprofile written by the ${name}`);
      const { summarise } = require('./profile-summary');
      return { file: path.relative(ROOT, file), ...summarise(JSON.parse(readFileSync(file, 'utf8')), 25) };
    };
    if (floorChild) results.floor_profile = await summaryOf('floor', floorChild, 10000);
    if (proxy) results.profile = await summaryOf('proxy', proxy.child, 20000);
    if (results.profile) writeFileSync(path.join(RESULTS, 'profile-summary.txt'), require('./profile-summary').format(results.profile) + '\n');
  }

  // -- a graceful stop leaves no record behind: every row the proxy began is finished (needs PostgreSQL: the
  // embedded database stops with the proxy)
  if (proxy && proxy.mode === 'postgresql') {
    for (const p of [proxy, baseline].filter(Boolean)) {
      const started = Date.now();
      await procs.stop(p.child, 30000);
      const statuses = await setup.countByStatus(p.dbUrl);
      const who = p === proxy ? 'proxy' : 'baseline';
      results.after_stop = { ...results.after_stop, [who]: { stop_ms: Date.now() - started, exit: p.child.exitCode ?? p.child.signalCode, statuses } };
      if (statuses.pending) {
        const what = `${who}: ${statuses.pending} exchanges still pending after a graceful stop (SIGTERM)`;
        // a smoke run (CI) reports it; a measuring run fails on it
        if (opts.mode === 'smoke') log(`WARNING: ${what}`);
        else broken.push(what);
      }
    }
  }

  results.machine.load_average_at_end = os.loadavg().map((v) => Math.round(v * 100) / 100);
  results.targets = evaluateTargets(results, opts);
  report(results, opts);
  writeFileSync(opts.out, JSON.stringify(results, null, 2) + '\n');
  log(`results written to ${path.relative(process.cwd(), opts.out)}`);
  if (broken.length) return 1;
  if (opts.strict && opts.mode !== 'smoke' && results.targets.some((t) => t.pass === false)) return 2;
  return 0;
}

/** Every 2xx the proxy answered must have its stored, completed exchange (waits briefly for in-flight writes). */
async function lostCheck(proxy, ids, ok2xx, label, broken) {
  const unique = [...new Set(ids)];
  let counted = { matched: 0, total: 0 };
  const deadline = Date.now() + 5000;
  while (true) {
    counted = await setup.countCompleted(proxy.dbUrl, unique);
    if (counted.matched >= unique.length || Date.now() > deadline) break;
    await sleep(200);
  }
  const out = {
    ok_2xx: ok2xx,
    request_ids_seen: unique.length,
    completed_records: counted.matched,
    lost: ok2xx - counted.matched,
  };
  if (unique.length !== ok2xx) out.note = `${ok2xx - unique.length} 2xx answers without a distinct X-Request-ID`;
  if (out.lost !== 0) broken.push(`${label}: ${out.lost} of ${ok2xx} 2xx answers have no completed exchange record`);
  return out;
}

/**
 * Every 2xx wrk counted must have a completed exchange: the proxy's rows per status are counted before its runs of a
 * case and again after them (waiting briefly for in-flight writes). Up to one request per connection per run can
 * be in flight when wrk stops: the proxy may finish and record it while wrk no longer counts it, so completed rows
 * may exceed the 2xx by that much; fewer completed rows than 2xx is a lost record.
 */
async function countCheck(proxy, before, ok2xx, inFlightMax, label, broken) {
  const completedOf = (s) => (s.completed ?? 0) - (before.completed ?? 0);
  let now = before;
  const deadline = Date.now() + 5000;
  while (true) {
    now = await setup.countByStatus(proxy.dbUrl);
    const settled = (now.pending ?? 0) <= (before.pending ?? 0);
    if ((completedOf(now) >= ok2xx && settled) || Date.now() > deadline) break;
    await sleep(200);
  }
  const delta = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(now)])) {
    const d = (now[k] ?? 0) - (before[k] ?? 0);
    if (d) delta[k] = d;
  }
  const completed = completedOf(now);
  const out = { check: 'count', ok_2xx: ok2xx, completed_records: completed, lost: Math.max(0, ok2xx - completed), rows_by_status: delta };
  if (completed > ok2xx) out.note = `${completed - ok2xx} completed beyond the 2xx: requests in flight when wrk stopped (at most ${inFlightMax})`;
  if (out.lost !== 0) broken.push(`${label}: ${out.lost} of ${ok2xx} 2xx answers have no completed exchange record (rows by status: ${JSON.stringify(delta)})`);
  return out;
}

/**
 * Whether the load generator could drive the floor: only when the direct case (the same wrk against the bare
 * upstream) reaches LOAD_GENERATOR_MIN_RATIO× the floor's req/s is the floor bound by its own core, and only then
 * does proxy/floor mean anything.
 */
function loadGeneratorCheck(caseResult) {
  const d = caseResult.direct?.rps;
  const f = caseResult.floor?.rps;
  if (!caseResult.floor) return { checked: false, reason: 'no floor run' };
  if (!caseResult.direct) return { checked: false, bound: undefined, reason: 'no direct run: the load generator cannot be checked' };
  const ratio = f ? r2(d / f) : undefined;
  return { checked: true, direct_rps: d, floor_rps: f, direct_over_floor: ratio, required: LOAD_GENERATOR_MIN_RATIO, bound: !(ratio >= LOAD_GENERATOR_MIN_RATIO) };
}

/** proxy/floor of a case (its main runs, or the median of its alternating rounds), or why there is none. */
function proxyOverFloor(c, rounds = false) {
  if (c.proxy?.rps === undefined || !c.floor?.rps) return undefined;
  if (rounds && !c.floor_rounds) return undefined;
  const value = rounds ? `${r2(c.floor_rounds.rps_ratio_median)}×` : ratio(c.proxy.rps, c.floor.rps);
  const lg = c.load_generator;
  if (lg?.bound) return `LG-bound (${value.replace('×', '')})`;
  if (lg && !lg.checked) return `${value} (unchecked)`;
  return value;
}

// ------------------------------------------------------------------------------------------------ targets & report

function evaluateTargets(results, opts) {
  const out = [];
  const cases = results.cases;
  const add = (name, value, limit, pass, unit = '') => out.push({ name, value, limit, unit, pass });
  for (const [key, c] of Object.entries(cases)) {
    if (!c?.proxy || !c?.floor) continue;
    // with alternating rounds, their median: the main runs of the floor and the proxy are a minute apart
    const r = c.floor_rounds;
    const pct = Math.round((r ? r.rps_ratio_median : c.proxy.rps / c.floor.rps) * 1000) / 10;
    const lg = c.load_generator;
    const name = `${CASES[key].stream ? 'SSE' : 'JSON'} ${CASES[key].path} @${opts.connections} conn: proxy req/s vs floor${r ? ` (median of ${r.rounds.length} alternating rounds)` : ''}`;
    // a floor held down by the load generator makes any proxy look close to it: no verdict then
    if (lg?.bound) out.push({ name, value: 'none', limit: '≥ 50%', unit: '', pass: undefined, result: `LOAD-GENERATOR BOUND (direct ${lg.direct_over_floor}× floor < ${lg.required}×)` });
    else if (!lg?.checked) out.push({ name, value: `${pct}%`, limit: '≥ 50%', unit: '', pass: undefined, result: `UNCHECKED (${lg?.reason ?? 'no direct run'})` });
    else add(name, `${pct}%`, '≥ 50%', pct >= 50);
  }
  for (const name of ['responses-json', 'chat-json']) {
    const c = cases[name];
    if (!c?.proxy || !c?.direct) continue;
    const d50 = r3(c.proxy.c1_p50_ms - c.direct.c1_p50_ms);
    const d99 = r3(c.proxy.c1_p99_ms - c.direct.c1_p99_ms);
    add(`${name} added latency @1 conn p50`, `+${d50} ms`, '≤ 0.5 ms', d50 <= 0.5);
    add(`${name} added latency @1 conn p99`, `+${d99} ms`, '≤ 3 ms', d99 <= 3);
  }
  for (const name of ['responses-sse', 'chat-sse']) {
    const c = cases[name];
    if (!c?.proxy || !c?.direct) continue;
    const d = r3(c.proxy.c1_ttfb_p50_ms - c.direct.c1_ttfb_p50_ms);
    add(`${name} time to first chunk added p50`, `+${d} ms`, '≤ 1 ms', d <= 1);
  }
  if (results.peak_rss_mb.proxy !== undefined) add(`proxy peak RSS, VmHWM (${results.peak_rss_mb.proxy_before_load} MB before the load)`, `${results.peak_rss_mb.proxy} MB`, '≤ 300 MB', results.peak_rss_mb.proxy <= 300);
  const lost = Object.values(results.lost_exchanges);
  if (lost.length) {
    const n = lost.reduce((a, l) => a + l.lost, 0);
    const total = lost.reduce((a, l) => a + l.ok_2xx, 0);
    add('lost exchange records', `${n} of ${total}`, '0', n === 0);
  }
  return out;
}

function ratio(a, b) {
  return a !== undefined && b ? `${r2(a / b)}×` : undefined;
}
function diff(a, b) {
  if (a === undefined || b === undefined) return undefined;
  const d = r2(a - b);
  return `${d >= 0 ? '+' : ''}${d} ms`;
}

const verdict = (t) => t.result ?? (t.pass ? 'PASS' : 'FAIL');

function caseRows(c, pgNote) {
  const v = (t, k) => c[t]?.[k];
  const withBaseline = c.baseline !== undefined;
  const row = (label, key, cmp, floorCmp = cmp) => [
    label,
    v('direct', key),
    v('floor', key),
    ...(withBaseline ? [v('baseline', key)] : []),
    v('proxy', key),
    cmp(v('proxy', key), v('direct', key)),
    floorCmp(v('proxy', key), v('floor', key)),
    ...(withBaseline ? [cmp(v('proxy', key), v('baseline', key))] : []),
  ];
  const none = () => undefined;
  const pgRow = row('PostgreSQL CPU ms/request', 'pg_cpu_ms_per_request', none);
  if (pgNote) {
    // embedded mode: the database is inside the proxy's process and figure
    const proxyColumn = withBaseline ? 4 : 3;
    if (c.proxy) pgRow[proxyColumn] = pgNote;
    if (c.baseline) pgRow[3] = pgNote;
  }
  return [
    row('req/s @N conn', 'rps', ratio, () => proxyOverFloor(c)),
    row('p50 ms @N conn', 'p50_ms', diff),
    row('p99 ms @N conn', 'p99_ms', diff),
    row('p50 ms @1 conn', 'c1_p50_ms', diff),
    row('p99 ms @1 conn', 'c1_p99_ms', diff),
    row('first chunk p50 ms @1', 'c1_ttfb_p50_ms', diff),
    row('first chunk p99 ms @1', 'c1_ttfb_p99_ms', diff),
    row('CPU ms/request', 'cpu_ms_per_request', ratio),
    pgRow,
    ...(pgNote ? [] : [row('PostgreSQL CPU ms/req, all DBs', 'pg_server_cpu_ms_per_request', none)]),
    row('peak RSS MB (VmHWM)', 'rss_mb', ratio),
    row('wrk CPU % @N conn', 'wrk_cpu_pct', none),
    row('core busy %: SUT', 'sut_core_busy_pct', none),
    row('core busy %: wrk+upstream', 'load_core_busy_pct', none),
    row('DB transactions/request', 'db_transactions_per_request', none),
    row('DB rows fetched/request', 'db_rows_fetched_per_request', none),
  ];
}

/** One line on the load generator of a case: whether the direct case outran the floor enough. */
function loadGeneratorLine(c) {
  const lg = c.load_generator;
  if (!lg || (!lg.checked && lg.reason === 'no floor run')) return undefined;
  if (!lg.checked) return `   load generator: ${lg.reason}`;
  return lg.bound
    ? `   LOAD-GENERATOR BOUND: direct ${lg.direct_rps} req/s is ${lg.direct_over_floor}× the floor's ${lg.floor_rps} (needs ≥ ${lg.required}×): the floor measures wrk and the upstream, not Node — no proxy/floor ratio for this case`
    : `   load generator: direct ${lg.direct_over_floor}× the floor (≥ ${lg.required}×): the floor is bound by its own core`;
}

/** One row per proxy (and baseline) and concurrency: the mean of each phase of the case's calls. */
function phaseRows(c, opts) {
  const rows = [];
  for (const t of ['baseline', 'proxy']) {
    const p = c[t]?.phases_ms;
    if (!p) continue;
    for (const [k, label] of [['c1', '@1'], ['cN', `@${opts.connections}`]]) {
      if (p[k]) rows.push([`${t} ${label}`, ...phases.PHASES.map((ph) => p[k][ph] ?? ''), p[k].sum]);
    }
  }
  return rows;
}

function report(results, opts) {
  const m = results.machine;
  const lines = [];
  lines.push('');
  lines.push(`== proxy benchmark (${results.mode}) — ${m.date}`);
  lines.push(`   ${m.cpu_model}, ${m.cores} cores, ${m.memory_gb} GB, Node ${m.node}, ${m.os}`);
  lines.push(`   load average (1 min) at start ${m.load_average_at_start[0]}, at end ${m.load_average_at_end[0]}${m.load_average_at_start[0] > m.cores * 0.25 ? '  ← a busy machine: figures are distorted' : ''}`);
  lines.push(
    results.pinning.enabled
      ? '   pinning: system under test on core 0; load generator and fake upstream on core 1 (PostgreSQL not pinned)'
      : `   pinning: OFF (${results.pinning.reason}) — every process shares every core`,
  );
  if (results.database) {
    const settings = Object.entries(results.database.settings ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');
    if (results.proxy_node_flags) lines.push(`   EXPERIMENT: proxy started with ${results.proxy_node_flags.join(' ')}`);
    if (results.proxy_env) lines.push(`   proxy environment: ${Object.entries(results.proxy_env).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (results.baseline_env) lines.push(`   baseline environment: ${Object.entries(results.baseline_env).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    lines.push(`   proxy database: ${results.database.mode}${results.database.name ? ` (${results.database.name})` : ''}; setup via ${results.database.setup}${settings ? `; EXPERIMENT: ${settings}` : ''}`);
  }
  if (results.baseline) lines.push(`   baseline: the proxy built in ${results.baseline.dir} (${results.baseline.commit}), same core, same upstream, its own database; this checkout is ${gitHead(path.join(__dirname, '..'))}`);
  lines.push(`   ${opts.connections} connections × ${opts.duration} s per throughput run (after ${opts.warmup} s warm-up), driven by ${results.load_generator.version ?? 'wrk'} on 1 thread; ${opts.seq} sequential requests @1 conn; SSE = 20 delta events`);
  const pgCpu = results.database?.cpu;
  const pgNote = pgCpu && !pgCpu.measured && results.database.mode === 'embedded' ? 'in proxy CPU' : undefined;
  if (pgCpu) {
    lines.push(
      pgCpu.measured
        ? `   PostgreSQL CPU: the proxy database's backends + the server's background processes ("all DBs": every process of the server, postmaster ${pgCpu.postmaster_pid})`
        : `   PostgreSQL CPU: not measured — ${pgCpu.reason}`,
    );
  }
  for (const [name, c] of Object.entries(results.cases)) {
    lines.push('', `-- ${name} (${CASES[name].path}${CASES[name].stream ? ', stream' : ''})`);
    const head = c.baseline
      ? ['metric', 'direct', 'floor', 'baseline', 'proxy', 'proxy vs direct', 'proxy vs floor', 'proxy vs baseline']
      : ['metric', 'direct', 'floor', 'proxy', 'proxy vs direct', 'proxy vs floor'];
    lines.push(table(head, caseRows(c, pgNote).map((r) => [r[0].replace('@N', `@${opts.connections}`), ...r.slice(1)])));
    const lgLine = loadGeneratorLine(c);
    if (lgLine) lines.push(lgLine);
    if (c.ab) {
      const ratios = (k) => c.ab.rounds.map((r) => r[k] ?? '–').join(' ');
      lines.push(
        `   proxy vs baseline in ${c.ab.rounds.length} alternating rounds of ${c.ab.seconds} s: req/s median ${c.ab.rps_ratio_median}× (${ratios('rps_ratio')}), CPU per request median ${c.ab.cpu_ratio_median}× (${ratios('cpu_ratio')})${
          c.ab.pg_cpu_ratio_median !== undefined ? `, PostgreSQL CPU per request median ${c.ab.pg_cpu_ratio_median}× (${ratios('pg_cpu_ratio')})` : ''
        }`,
      );
    }
    if (c.floor_rounds) {
      const f = c.floor_rounds;
      const ratios = (k) => f.rounds.map((r) => r[k] ?? '–').join(' ');
      lines.push(`   proxy vs floor in ${f.rounds.length} alternating rounds of ${f.seconds} s: req/s median ${f.rps_ratio_median}× (${ratios('rps_ratio')}), CPU per request median ${f.cpu_ratio_median}× (${ratios('cpu_ratio')})`);
    }
    const ph = phaseRows(c, opts);
    if (ph.length) {
      lines.push(`   where a call's time goes (mean ms per phase, from the proxy's own sums; @1 minus direct's total p50 ≈ what the proxy adds)`);
      lines.push(table(['target', ...phases.PHASES, 'sum'], ph));
    }
  }
  if (results.realistic_streaming) {
    const rs = results.realistic_streaming;
    lines.push('', `-- realistic streaming (first token after ${rs.first_byte_ms} ms, ${rs.event_interval_ms} ms between events; ${rs.requests_per_target} requests, ${rs.concurrency} at a time)`);
    const rows = [];
    for (const [name, c] of Object.entries(rs.cases)) {
      for (const [k, label] of [['ttfb_p50_ms', 'first chunk p50'], ['ttfb_p99_ms', 'first chunk p99'], ['total_p50_ms', 'total p50'], ['total_p99_ms', 'total p99']]) {
        rows.push([`${name} ${label}`, c.direct?.[k], c.floor?.[k], ...(rs.baseline ? [c.baseline?.[k]] : []), c.proxy?.[k], diff(c.proxy?.[k], c.direct?.[k])]);
      }
    }
    lines.push(table(['ms', 'direct', 'floor', ...(rs.baseline ? ['baseline'] : []), 'proxy', 'proxy added'], rows));
  }
  if (results.analytics) {
    const a = results.analytics;
    lines.push('', '-- persona analytics');
    lines.push(a.error ? `   ERROR: ${a.error}` : a.skipped ? `   skipped: ${a.skipped}` : `   ${a.exchanges} exchanges, ${a.calls} calls: p50 ${a.p50_ms} ms, p95 ${a.p95_ms} ms, max ${a.max_ms} ms (seeded in ${a.seed_ms} ms)`);
  }
  if (results.after_stop) {
    lines.push('', '-- after a graceful stop (SIGTERM): exchanges per status (none may stay pending)');
    lines.push(
      table(
        ['target', 'stop ms', 'exit', 'statuses'],
        Object.entries(results.after_stop).map(([k, a]) => [k, a.stop_ms, a.exit, Object.entries(a.statuses).map(([s, n]) => `${s} ${n}`).join(', ')]),
      ),
    );
  }
  if (Object.keys(results.lost_exchanges).length) {
    lines.push('', '-- stored exchanges (every 2xx must have a completed record)');
    lines.push('   @50: rows counted per status around the wrk runs; @1 and realistic: every X-Request-ID looked up');
    lines.push(table(['case', 'check', '2xx', 'completed', 'lost', 'note'], Object.entries(results.lost_exchanges).map(([k, l]) => [k, l.check ?? 'per id', l.ok_2xx, l.completed_records, l.lost, l.note ?? ''])));
  }
  if (results.targets.length) {
    lines.push('', `-- targets${opts.mode === 'smoke' ? ' (smoke run: not enforced, too short to mean much)' : ''}`);
    lines.push(table(['target', 'measured', 'limit', 'result'], results.targets.map((t) => [t.name, t.value, t.limit, verdict(t)])));
  }
  for (const [p, title, functions, areas] of [
    [results.profile, 'proxy CPU profile', 20, 12],
    [results.floor_profile, 'floor CPU profile, the same load', 12, 8],
  ]) {
    if (!p) continue;
    const { format } = require('./profile-summary');
    lines.push('', `-- ${title} (${p.file})`);
    lines.push(format({ ...p, functions: p.functions.slice(0, functions), areas: p.areas.slice(0, areas) }));
  }
  if (results.broken.length) {
    lines.push('', '-- BROKEN RUN');
    for (const b of results.broken) lines.push(`   ${b}`);
  }
  lines.push('', '-- markdown (for the README)', '', toMarkdown(results, opts), '');
  process.stdout.write(lines.join('\n') + '\n');
}

function toMarkdown(results, opts) {
  const m = results.machine;
  const out = [];
  out.push(
    `${m.cpu_model}, ${m.cores} cores, Node ${m.node}, ${results.database?.mode ?? 'no'} database, ${results.pinning.enabled ? 'proxy pinned to one core' : 'no core pinning'}, load from ${results.load_generator?.version ?? 'wrk'} (1 thread, ${opts.connections} connections), ${results.mode} run, ${m.date.slice(0, 10)}.`,
    '',
  );
  const rows = [];
  for (const [name, c] of Object.entries(results.cases)) {
    const ttfb = CASES[name].stream;
    rows.push([
      `\`${CASES[name].path}\` ${ttfb ? 'SSE' : 'JSON'}`,
      c.direct?.rps,
      c.floor?.rps,
      c.proxy?.rps,
      proxyOverFloor(c),
      ...(opts.floorRounds > 0 ? [proxyOverFloor(c, true)] : []),
      c.proxy ? `${c.proxy.p50_ms} / ${c.proxy.p99_ms}` : undefined,
      diff(c.proxy?.c1_p50_ms, c.direct?.c1_p50_ms),
      diff(c.proxy?.c1_p99_ms, c.direct?.c1_p99_ms),
      ttfb ? diff(c.proxy?.c1_ttfb_p50_ms, c.direct?.c1_ttfb_p50_ms) : '',
      c.proxy?.cpu_ms_per_request,
      results.database?.mode === 'embedded' ? 'in proxy CPU' : c.proxy?.pg_cpu_ms_per_request,
      c.proxy?.rss_mb,
    ]);
  }
  out.push(
    markdown(
      [
        'case',
        'direct req/s',
        'floor req/s',
        'proxy req/s',
        'proxy/floor',
        ...(opts.floorRounds > 0 ? [`proxy/floor, ${opts.floorRounds} rounds (median)`] : []),
        `proxy p50/p99 ms @${opts.connections}`,
        'added p50 @1',
        'added p99 @1',
        'added first chunk p50',
        'proxy CPU ms/req',
        'PostgreSQL CPU ms/req',
        'proxy peak RSS MB',
      ],
      rows,
    ),
  );
  const phaseTable = [];
  for (const [name, c] of Object.entries(results.cases)) {
    for (const r of phaseRows(c, opts)) phaseTable.push([`${name} ${r[0]}`, ...r.slice(1)]);
  }
  if (phaseTable.length) {
    out.push('', markdown(['where a call\'s time goes (mean ms)', ...phases.PHASES, 'sum'], phaseTable));
  }
  if (results.realistic_streaming) {
    out.push('');
    const rows2 = Object.entries(results.realistic_streaming.cases).map(([name, c]) => [
      `\`${CASES[name].path}\` SSE, 200 ms + 20 ms/event`,
      c.direct ? `${c.direct.ttfb_p50_ms} / ${c.direct.total_p50_ms}` : undefined,
      c.proxy ? `${c.proxy.ttfb_p50_ms} / ${c.proxy.total_p50_ms}` : undefined,
      diff(c.proxy?.ttfb_p50_ms, c.direct?.ttfb_p50_ms),
    ]);
    out.push(markdown(['realistic stream', 'direct first chunk / total p50 ms', 'proxy first chunk / total p50 ms', 'added'], rows2));
  }
  if (results.analytics && results.analytics.p50_ms !== undefined) {
    out.push('', `Persona analytics over ${results.analytics.exchanges.toLocaleString('en-US')} exchanges: p50 ${results.analytics.p50_ms} ms, p95 ${results.analytics.p95_ms} ms.`);
  }
  if (results.targets.length) {
    out.push('', markdown(['target', 'measured', 'limit', 'result'], results.targets.map((t) => [t.name, t.value, t.limit, verdict(t)])));
  }
  return out.join('\n');
}

// ------------------------------------------------------------------------------------------------ entry

let exiting = false;
async function exit(code) {
  if (exiting) return;
  exiting = true;
  await procs.cleanupAll();
  process.exit(code);
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    void exit(130);
  });
}

if (require.main === module) {
  main().then(
    (code) => exit(code),
    (err) => {
      process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
      void exit(1);
    },
  );
}

module.exports = { CASES, parseArgs };
