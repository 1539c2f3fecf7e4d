'use strict';
/** Child processes of the bench: started pinned to a core where taskset works, all stopped on exit or Ctrl-C. */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const { readFileSync, readdirSync, rmSync, writeFileSync } = require('node:fs');
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

/** Pins this process (every thread: the sequential client, the libuv pool) to the load core, beside wrk. */
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

/** The stat fields of a process after its name: f[1] ppid, f[11..14] utime, stime, cutime, cstime (ticks). */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU seconds of a process tree so far: the root and every live descendant, each with the CPU of its children
 * that have already ended (cutime + cstime), so a process that ends during a measurement still counts.
 * Used for the PostgreSQL server: its postmaster and every backend, worker and background process.
 */
function treeCpuSeconds(rootPid) {
  let root;
  try {
    root = statFields(rootPid);
  } catch {
    return undefined;
  }
  const ticks = (f) => Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  const children = new Map();
  const all = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const f = statFields(name);
      all.set(name, f);
      const ppid = f[1];
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(name);
    } catch {
      // ended while the directory was read
    }
  }
  let sum = ticks(root);
  const queue = [...(children.get(String(rootPid)) ?? [])];
  while (queue.length) {
    const pid = queue.pop();
    sum += ticks(all.get(pid));
    queue.push(...(children.get(pid) ?? []));
  }
  return sum / CLK_TCK;
}

/** Busy and total ticks of each core so far (/proc/stat), to tell how busy a core was between two readings. */
function coreTicks() {
  try {
    const out = {};
    for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const v = m[2].trim().split(/\s+/).map(Number);
      const idle = v[3] + (v[4] ?? 0); // idle + iowait
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // without guest time, which user time already holds
      out[m[1]] = { busy: total - idle, total };
    }
    return out;
  } catch {
    return undefined;
  }
}

/** Percent busy of `core` between two coreTicks() readings. */
function coreBusyPct(before, after, core) {
  const a = before?.[core];
  const b = after?.[core];
  if (!a || !b || b.total === a.total) return undefined;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * 100);
}

/** Resets a process's peak RSS (VmHWM) to its current RSS, so the next reading is the peak since now. */
function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
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
  statFields,
  treeCpuSeconds,
  coreTicks,
  coreBusyPct,
  resetPeakRss,
  peakRssMb,
  CLK_TCK,
  freePort,
};
