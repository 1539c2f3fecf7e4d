import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../..');
const NODE = resolve(ROOT, 'node_modules/.bin/node');
const DEMO = resolve(ROOT, 'scripts/demo.js');

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node scripts/demo.js` (what `npm run demo` runs after building) on the stand-in upstream.
 * `interruptWhen`: send SIGINT once stdout contains it.
 */
function runDemo(interruptWhen?: string, extraEnv: Record<string, string> = {}, args: string[] = [], whenInterrupting?: (stdout: string) => Promise<void>): Promise<DemoRun> {
  const env = { ...process.env, ...extraEnv };
  // never call the real OpenAI API from the tests
  delete env.OPENAI_API_KEY;
  return new Promise((done, fail) => {
    const child = spawn(NODE, [DEMO, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    const killer = setTimeout(() => child.kill('SIGKILL'), 170_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (interruptWhen && !interrupted && stdout.includes(interruptWhen)) {
        interrupted = true;
        if (whenInterrupting) void whenInterrupting(stdout).finally(() => child.kill('SIGINT'));
        else child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', fail);
    child.once('exit', (code, signal) => {
      clearTimeout(killer);
      done({ code, signal, stdout, stderr });
    });
  });
}

function tempDirOf(out: string): string {
  const dir = /temporary data directory: (\S+)/.exec(out)?.[1];
  expect(dir).toBeDefined();
  return dir!;
}

async function listening(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
    return true;
  } catch {
    return false;
  }
}

// The runs are independent (each its own temporary directory, ports and processes) and mostly one busy process at a
// time: side by side they take about the time of the longest.
describe.concurrent('npm run demo', () => {
  it('needs a build first', () => {
    // `npm test` builds before running the tests; running vitest alone needs `npm run build` first
    expect(existsSync(resolve(ROOT, 'dist/src/main.js')), 'dist/src/main.js is missing: run npm run build').toBe(true);
    expect(existsSync(resolve(ROOT, 'dist/src/cli.js')), 'dist/src/cli.js is missing: run npm run build').toBe(true);
    expect(existsSync(resolve(ROOT, 'dist/test/support/fake-upstream.js'))).toBe(true);
  });

  it('runs both examples against a throw-away server and leaves nothing behind', { timeout: 180_000 }, async () => {
    const run = await runDemo();
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = run.stdout;

    expect(out).toContain('🧪 STAND-IN upstream at http://127.0.0.1:');
    expect(out).toContain('NOT a real model');
    expect(out).toMatch(/\$ openai-proxy org create "Demo Organization"\n/);
    expect(out).toMatch(/\$ openai-proxy key create [0-9a-f-]{36} - --user-id [0-9a-f-]{36} --label demo-user-key {3}\(API key on stdin\)/);
    expect(out).toContain('keys: user key …0000 for the user, organization key …0000 for everyone else');
    // both examples, completely, with the 403 shown through the key-less organization
    expect(out).toContain('=== Example Complete ===');
    expect(out).toContain('✅ 403 no API key: 403 PermissionDeniedError');
    expect(out).toContain('X-Key-Source: user');
    expect(out).toContain('✅ Result was cached: True');
    expect(out).toContain('✅ All analyses completed successfully!');
    const swagger = /Swagger UI: (http:\/\/127\.0\.0\.1:\d+)\/docs/.exec(out)?.[1];
    expect(swagger).toBeDefined();
    expect(out).toContain('✅ Demo completed successfully.');
    // the console's address and a token to sign in with
    expect(out).toContain(`🖥  Console: ${swagger}/console`);
    expect(out).toMatch(/ {8}Token: {3}eyJ[\w-]+\.[\w-]+\.[\w-]+\n {8}User ID: demo-user@example\.com\n/);

    // nothing left running, nothing left on disk
    expect(existsSync(tempDirOf(out))).toBe(false);
    expect(await listening(swagger!)).toBe(false);
  });

  it('keeps the server up with --keep, for the console, until Ctrl-C', { timeout: 180_000 }, async () => {
    const seen: { console?: number; personas?: number } = {};
    const run = await runDemo('Press Ctrl-C to stop it and clean up.', {}, ['--keep'], async (out) => {
      const url = /🖥 {2}Console: (\S+)\/console/.exec(out)![1];
      const token = /Token: {3}(\S+)/.exec(out)![1];
      // still serving after the demo is done: the console, and the API with the printed token
      await new Promise((r) => setTimeout(r, 500));
      seen.console = (await fetch(`${url}/console`)).status;
      seen.personas = (await fetch(`${url}/v1/personas`, { headers: { authorization: `Bearer ${token}`, 'x-user-id': 'demo-user@example.com' } })).status;
    });
    expect(run.stdout).toContain('✅ Demo completed successfully.');
    expect(seen).toEqual({ console: 200, personas: 200 });
    expect(run.code).toBe(130);
    expect(existsSync(tempDirOf(run.stdout))).toBe(false);
    const server = /server \(dist\/src\/main\.js\) listening on (\S+),/.exec(run.stdout)?.[1];
    expect(await listening(server!)).toBe(false);
  });

  it('cleans up when interrupted with Ctrl-C', { timeout: 180_000 }, async () => {
    const run = await runDemo('━━━ 4. examples/client.ts');
    expect(run.code).toBe(130);
    expect(run.stdout).toContain('SIGINT: stopping the demo and cleaning up...');
    expect(run.stdout).not.toContain('Demo completed successfully');
    expect(existsSync(tempDirOf(run.stdout))).toBe(false);
    const server = /server \(dist\/src\/main\.js\) listening on (\S+),/.exec(run.stdout)?.[1];
    expect(server).toBeDefined();
    expect(await listening(server!)).toBe(false);
  });

  it('fails with a non-zero exit, and still cleans up, when a step fails', { timeout: 180_000 }, async () => {
    // the stand-in answers 400 for this model, so the first example call fails
    const run = await runDemo(undefined, { PROXY_MODEL: 'fail-400' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('❌ Demo failed: examples/client.ts failed (exit code 1)');
    expect(run.stdout).not.toContain('Demo completed successfully');
    expect(existsSync(tempDirOf(run.stdout))).toBe(false);
    const server = /server \(dist\/src\/main\.js\) listening on (\S+),/.exec(run.stdout)?.[1];
    expect(await listening(server!)).toBe(false);
  });
});
