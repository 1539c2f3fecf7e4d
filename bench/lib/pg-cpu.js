'use strict';
/**
 * CPU the PostgreSQL server spends on the system under test, read from /proc when the server runs on this machine.
 *
 * Two figures per run:
 * - `own`: the backends connected to the measured database plus the server's shared background processes (WAL
 *   writer, checkpointer, background writer, autovacuum launcher, …): what the proxy's calls cost the server, without
 *   the traffic of other databases on the same server (a development machine's test suites, say);
 * - `server`: every process of the server, i.e. the postmaster and all its children, with the CPU of those that end
 *   during the run (the postmaster's cutime/cstime): the upper bound, other databases' work included.
 */
const { readFileSync } = require('node:fs');
const { Client } = require('pg');
const procs = require('./procs');

const { statFields } = procs;
const comm = (pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();

class PgCpu {
  constructor(client, postmasterPid) {
    this.client = client;
    this.postmasterPid = postmasterPid;
  }

  /**
   * Connects to the server of `databaseUrl` (a database other than the measured ones, so this connection's own
   * backend is never counted) and finds its postmaster: the parent of this connection's backend.
   * @returns {Promise<{pgCpu?: PgCpu, reason?: string}>}
   */
  static async open(databaseUrl) {
    const client = new Client({ connectionString: databaseUrl });
    await client.connect();
    let backend;
    try {
      backend = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const ppid = Number(statFields(backend)[1]);
      // the pid must be a PostgreSQL process here, not one of another machine or container that shares the number
      if (comm(backend) !== 'postgres' || comm(ppid) !== 'postgres') throw new Error('not postgres');
      const pgCpu = new PgCpu(client, ppid);
      procs.onCleanup(() => client.end());
      return { pgCpu };
    } catch {
      await client.end().catch(() => {});
      return { reason: `the server's processes are not visible on this machine (backend pid ${backend ?? '?'})` };
    }
  }

  /** A reading before or after a run, for the processes serving database `dbName`. */
  async sample(dbName) {
    const { rows } = await this.client.query('SELECT pid, datname FROM pg_stat_activity');
    const own = new Map();
    for (const r of rows) {
      // a null database: the shared background processes
      if (r.datname !== null && r.datname !== dbName) continue;
      try {
        const f = statFields(r.pid);
        if (Number(f[1]) !== this.postmasterPid) continue;
        own.set(r.pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
      } catch {
        // ended meanwhile
      }
    }
    return { own, server: procs.treeCpuSeconds(this.postmasterPid) };
  }

  /**
   * CPU seconds between two readings: a process that started in between counts from zero; one that ended in
   * between is missing from `own` (the proxy's pool keeps its connections under load) but not from `server`.
   */
  static between(before, after) {
    let ticks = 0;
    for (const [pid, t] of after.own) ticks += t - (before.own.get(pid) ?? 0);
    return {
      own: ticks / procs.CLK_TCK,
      server: before.server !== undefined && after.server !== undefined ? after.server - before.server : undefined,
    };
  }
}

module.exports = { PgCpu };
