'use strict';
/** Child processes of the bench: started pinned to a core where taskset works, all stopped on exit or Ctrl-C. */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const { readFileSync, rmSync } = require('node:fs');
const net = require('node:net');
const os = require('node:os');

const children = new Set();
const cleanups = [];

/** Whether `taskset` can pin processes here, and the cores it pins to (system under test / load). */
function detectPinning() {
  const cores = os.cpus().length;
  if (process.platform !== 'linux') return { ok: false, reason: 'not Linux' };
  if (cores < 2) return { ok: false, reason: `only ${cores} core` };
  const r = spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return { ok: false, reason: r.error ? `taskset not usable (${r.error.code})` : 'taskset refused' };
  return { ok: true, sutCore: '0', loadCore: '1' };
}

/** Pins this process (every thread: autocannon, the TTFB client, the libuv pool) to the load core. */
function pinSelf(core) {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', core, String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function start(name, cmd, args, { env, core, pinning, onLine } = {}) {
  const useTaskset = pinning?.ok && core !== undefined;
  const file = useTaskset ? 'taskset' : cmd;
  const argv = useTaskset ? ['-c', core, cmd, ...args] : args;
  const child = spawn(file, argv, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.benchName = name;
  child.stderrTail = '';
  child.stdoutTail = '';
  children.add(child);
  child.once('exit', () => children.delete(child));
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d.toString();
    child.stdoutTail = (child.stdoutTail + d.toString()).slice(-4000);
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine?.(line);
    }
  });
  child.stderr.on('data', (d) => {
    child.stderrTail = (child.stderrTail + d.toString()).slice(-4000);
  });
  return child;
}

/** Resolves with the first stdout line matching `re` (its match), rejects when the child dies first. */
function startAndWaitForLine(name, cmd, args, re, opts = {}) {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${name} did not start within ${opts.timeoutMs ?? 30000} ms`)), opts.timeoutMs ?? 30000);
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(value);
    };
    const child = start(name, cmd, args, {
      ...opts,
      onLine: (line) => {
        const m = re.exec(line);
        if (m) finish(undefined, { child, match: m });
      },
    });
    child.once('exit', (code, sig) => finish(new Error(`${name} exited (${code ?? sig}) before it was ready: ${child.stderrTail.trim()}`)));
  });
}

async function stop(child, timeoutMs = 10000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(t);
}

function onCleanup(fn) {
  cleanups.push(fn);
}

let cleaning;
/** Stops every child and runs the cleanups (newest first); safe to call more than once. */
function cleanupAll() {
  cleaning ??= (async () => {
    await Promise.all([...children].map((c) => stop(c, 5000)));
    while (cleanups.length) {
      const fn = cleanups.pop();
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`bench: cleanup failed: ${err instanceof Error ? err.message : err}\n`);
      }
    }
  })();
  return cleaning;
}

// Last resort when the process leaves without cleanupAll(): no child outlives the bench.
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
});

function removeDirLater(dir) {
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** user+system CPU seconds a process has used so far (Linux /proc), or undefined. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** peak resident set size in MB (VmHWM), or undefined. */
function peakRssMb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

module.exports = {
  detectPinning,
  pinSelf,
  start,
  startAndWaitForLine,
  stop,
  onCleanup,
  cleanupAll,
  removeDirLater,
  cpuSeconds,
  peakRssMb,
  freePort,
};
