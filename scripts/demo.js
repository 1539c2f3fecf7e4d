#!/usr/bin/env node
'use strict';
/**
 * `npm run demo`: the whole product in one command on a bare machine.
 *
 * Starts the built server on a throw-away embedded database (temporary DATA_DIR, free port), makes an
 * organization, a user, keys and tokens with the admin CLI, runs examples/client.ts and
 * examples/analysis-client.ts against it, then stops everything and deletes the temporary directory.
 *
 * Upstream: the real OpenAI API when OPENAI_API_KEY is set, otherwise a local OpenAI-compatible stand-in
 * (the compiled test fake) that gives deterministic canned answers.
 *
 * Ends by printing the web console's address with a token of the demo organization. With `--keep`
 * (`npm run demo -- --keep`) the server and the stand-in stay up afterwards, to look around in the console,
 * until Ctrl-C stops them and deletes the temporary directory.
 *
 * Needs a prior `npm run build` (the npm script does it). Exits non-zero if any step fails.
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const NODE = process.execPath;
const SERVER_JS = path.join(ROOT, 'dist/src/main.js');
const CLI_JS = path.join(ROOT, 'dist/src/cli.js');
const FAKE_JS = path.join(ROOT, 'dist/test/support/fake-upstream.js');
const EXAMPLES = [path.join(ROOT, 'examples/client.ts'), path.join(ROOT, 'examples/analysis-client.ts')];
const OPENAI_URL = 'https://api.openai.com/v1';
const DEMO_USER = 'demo-user@example.com';
const KEEP = process.argv.slice(2).includes('--keep');

/** settings of the parent shell that must not leak into the throw-away server (it must not touch a real database) */
const ISOLATED_VARS = [
  'DATABASE_URL', 'DATA_DIR', 'JWT_SECRET', 'ENCRYPTION_KEY', 'ENCRYPTION_KEY_PREVIOUS', 'JWT_ISSUER', 'JWT_AUDIENCE',
  'REDIS_URL', 'PORT', 'HOST', 'OPENAI_BASE_URL', 'PRICES_FILE',
];

const children = new Set();
let tmpDir;
let cleaningUp;
let interrupted = false;

class DemoError extends Error {}

function say(line = '') {
  process.stdout.write(line + '\n');
}

function step(title) {
  say('');
  say(`━━━ ${title} ${'━'.repeat(Math.max(3, 70 - title.length))}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Runs a command to completion; resolves with its output, rejects on a non-zero exit. */
function run(args, { env, inherit = false, label, input }) {
  return new Promise((resolve, reject) => {
    const stdio = inherit ? 'inherit' : [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    const child = track(spawn(NODE, args, { cwd: ROOT, env, stdio }));
    if (input !== undefined) child.stdin.end(input);
    let stdout = '';
    let stderr = '';
    if (!inherit) {
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
    }
    child.once('error', (err) => reject(new DemoError(`${label}: ${err.message}`)));
    child.once('exit', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new DemoError(`${label} failed (${signal ?? `exit code ${code}`})${stderr ? `:\n${stderr.trim()}` : ''}`));
    });
  });
}

/** One admin CLI command with --json; returns the parsed object it printed. `input` goes to its stdin. */
async function cli(env, args, input) {
  const shown = args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ') + (input === undefined ? '' : '   (API key on stdin)');
  const { stdout } = await run([CLI_JS, ...args, '--json'], { env, label: `cli ${shown}`, input });
  // one JSON object: the whole output, or its last line if something logged before it
  for (const candidate of [stdout.trim(), stdout.trim().split('\n').pop() ?? '']) {
    try {
      const out = JSON.parse(candidate);
      say(`   $ openai-proxy ${shown}`);
      return out;
    } catch {
      // try the next form
    }
  }
  throw new DemoError(`cli ${shown} printed no JSON: ${stdout.trim() || '(nothing)'}`);
}

/** Starts the fake upstream on a free port and returns its base URL (…/v1). */
function startStandIn() {
  if (!fs.existsSync(FAKE_JS)) throw new DemoError(`${path.relative(ROOT, FAKE_JS)} is missing: run npm run build first`);
  return new Promise((resolve, reject) => {
    const child = track(spawn(NODE, [FAKE_JS, '--port', '0', '--delta-count', '8'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    const onData = (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (out += d));
    child.once('error', (err) => reject(new DemoError(`stand-in upstream: ${err.message}`)));
    child.once('exit', (code) => reject(new DemoError(`stand-in upstream exited (${code}): ${out.trim()}`)));
  });
}

async function startServer(env, logFile) {
  if (!fs.existsSync(SERVER_JS) || !fs.existsSync(CLI_JS)) {
    throw new DemoError('dist/src/main.js or dist/src/cli.js is missing: run npm run build first');
  }
  const log = fs.openSync(logFile, 'a');
  const child = track(spawn(NODE, [SERVER_JS], { cwd: ROOT, env, stdio: ['ignore', log, log] }));
  fs.closeSync(log);
  let exited;
  child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  const url = `http://127.0.0.1:${env.PORT}`;
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (exited) throw new DemoError(`the server stopped while starting (${exited})\n${tail(logFile)}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return { url, child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new DemoError(`the server did not become healthy within 90 s\n${tail(logFile)}`);
}

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(resolve, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function cleanup() {
  cleaningUp ??= (async () => {
    const running = [...children];
    for (const child of running) child.kill('SIGTERM');
    await Promise.all(running.map((c) => waitExit(c, 10_000)));
    for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true, maxRetries: 3 });
  })();
  return cleaningUp;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    interrupted = true;
    say(`\n${signal}: stopping the demo and cleaning up...`);
    cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

async function main() {
  const realOpenAI = Boolean(process.env.OPENAI_API_KEY);
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'openai-proxy-demo-'));

  say('🚀 OpenAI Inference Proxy — demo');
  say(`   temporary data directory: ${tmpDir} (deleted at the end)`);

  step('1. Upstream');
  let upstreamUrl;
  let upstreamKey;
  if (realOpenAI) {
    upstreamUrl = OPENAI_URL;
    upstreamKey = process.env.OPENAI_API_KEY;
    say(`   🌐 the real OpenAI API (${OPENAI_URL}), with the key in OPENAI_API_KEY (calls are billed to it)`);
  } else {
    upstreamUrl = await startStandIn();
    upstreamKey = 'sk-demo-stand-in-0000';
    say(`   🧪 STAND-IN upstream at ${upstreamUrl}`);
    say('      A local OpenAI-compatible fake (dist/test/support/fake-upstream.js), NOT a real model:');
    say('      it echoes the prompt ("Echo: …") and returns generated structured output for analyses.');
    say('      Set OPENAI_API_KEY to run the demo against the real OpenAI API.');
  }

  step('2. Server');
  const env = { ...process.env };
  for (const name of ISOLATED_VARS) delete env[name];
  Object.assign(env, {
    DATA_DIR: path.join(tmpDir, 'data'),
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    OPENAI_BASE_URL: upstreamUrl,
    LOG_LEVEL: process.env.LOG_LEVEL || 'warn',
  });
  const logFile = path.join(tmpDir, 'server.log');
  const server = await startServer(env, logFile);
  say(`   ✅ server (dist/src/main.js) listening on ${server.url}, embedded database in the temporary directory`);

  step('3. Organization, user, keys and tokens (admin CLI)');
  // the API key goes through stdin ('-'), so it stays out of the process list
  const org = await cli(env, ['org', 'create', 'Demo Organization']);
  const user = await cli(env, ['user', 'create', org.id, DEMO_USER]);
  const userKey = await cli(env, ['key', 'create', org.id, '-', '--user-id', user.id, '--label', 'demo-user-key'], upstreamKey);
  const orgKey = await cli(env, ['key', 'create', org.id, '-', '--label', 'demo-organization-key'], upstreamKey);
  const jwt = await cli(env, ['jwt', 'create', '--org-id', org.id]);
  const bare = await cli(env, ['org', 'create', 'Demo Organization Without Keys']);
  const bareJwt = await cli(env, ['jwt', 'create', '--org-id', bare.id]);
  say(`   organization ${org.id}`);
  say(`   user ${DEMO_USER} (internal id ${user.id})`);
  say(`   keys: ${userKey.scope} key …${userKey.last4} for the user, ${orgKey.scope} key …${orgKey.last4} for everyone else`);
  say(`   token for the organization (jti ${jwt.jti}), and one for an organization without keys (to show the 403)`);

  const exampleEnv = {
    ...process.env,
    PROXY_BASE_URL: server.url,
    PROXY_JWT_TOKEN: jwt.token,
    USER_ID: DEMO_USER,
    NO_KEY_JWT_TOKEN: bareJwt.token,
  };
  delete exampleEnv.SAMPLE_REQUEST_ID;
  delete exampleEnv.SAMPLE_RESPONSE_ID;

  step('4. examples/client.ts');
  await run(['--no-warnings', EXAMPLES[0]], { env: exampleEnv, inherit: true, label: 'examples/client.ts' });

  step('5. examples/analysis-client.ts');
  await run(['--no-warnings', EXAMPLES[1]], { env: exampleEnv, inherit: true, label: 'examples/analysis-client.ts' });

  step('Done');
  say(`   📖 Swagger UI: ${server.url}/docs (OpenAPI JSON at ${server.url}/docs-json) — served while the demo ran.`);
  say(`   🖥  Console: ${server.url}/console`);
  say('      Sign in with');
  say(`        Token:   ${jwt.token}`);
  say(`        User ID: ${DEMO_USER}`);
  if (KEEP) {
    say('   ✅ Demo completed successfully.');
    say(`   ⏸  --keep: the server stays up at ${server.url} (console at ${server.url}/console). Press Ctrl-C to stop it and clean up.`);
    return 'keep';
  }
  say('      The demo keeps nothing running (npm run demo -- --keep leaves the server up). To explore the API yourself:');
  say('        npm start                                   # http://localhost:8000/docs and /console');
  say('        npm run -s cli -- org create "My Organization"');
  say('        npm run -s cli -- jwt create --org-id <org-id>   # paste into Authorize or the console, with an X-User-ID');
  say('   ✅ Demo completed successfully.');
}

main()
  .then(
    // --keep: the server runs until Ctrl-C (the signal handler cleans up and exits)
    (outcome) => (outcome === 'keep' ? new Promise(() => {}) : cleanup().then(() => 0)),
    (err) => {
      // an interrupted step fails too; the signal handler reports and exits
      if (interrupted) return new Promise(() => {});
      process.stderr.write(`\n❌ Demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
      if (!(err instanceof DemoError) && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
      return cleanup().then(() => 1);
    },
  )
  .then((code) => process.exit(code));
