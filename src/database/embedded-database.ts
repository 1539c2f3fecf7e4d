import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Connections the embedded socket server accepts; the pool of each process stays at or below it. */
export const EMBEDDED_MAX_CONNECTIONS = 16;

/** The database a process uses (also the DI token for it). */
export abstract class DatabaseHandle {
  abstract url: string;
  abstract embedded: boolean;
  /** the pool size a process may use against this database */
  abstract maxPool: number;
  abstract close(): Promise<void>;
}

interface EndpointFile {
  pid: number;
  /** the Unix socket the server's embedded database listens on */
  socket: string;
  /** a `pg` connection string for it */
  url: string;
}

function endpointFile(dataDir: string): string {
  return join(dataDir, 'embedded-db.json');
}

/** The file name PostgreSQL clients look for in a socket directory (`host=/dir`, port 5432). */
const SOCKET_PORT = 5432;
const SOCKET_NAME = `.s.PGSQL.${SOCKET_PORT}`;
// sun_path holds 108 bytes on Linux, 104 on macOS
const MAX_SOCKET_PATH = 100;

/**
 * A directory only this user can enter, for the database's socket: PGlite's socket server checks no password,
 * so the file system is what keeps other local users out (the directory 0700, the socket 0600).
 */
function privateSocketDir(dataDir: string): string {
  const dir = join(dataDir, 'socket');
  if (join(dir, SOCKET_NAME).length > MAX_SOCKET_PATH) return mkdtempSync(join(tmpdir(), 'openai-proxy-db-'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory() || (process.getuid && st.uid !== process.getuid())) {
    throw new Error(`${dir} must be a directory owned by this user`);
  }
  chmodSync(dir, 0o700);
  return dir;
}

function makePrivate(path: string, mode: number): void {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a process that exited but was not reaped yet (a zombie) still answers signal 0
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = connect({ path });
    const done = (ok: boolean) => {
      socket.destroy();
      resolveConnect(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1000, () => done(false));
  });
}

// `host` names the socket's directory (libpq's convention, which `pg` follows); the authority part is only there
// for parsers that read host and database from the URL before `pg` applies the query
function urlFor(socketDir: string): string {
  return `postgres://postgres:postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}&port=${SOCKET_PORT}&sslmode=disable`;
}

/** The socket of an embedded database another process of ours (a running server) already serves, if any. */
export async function findRunningEmbedded(dataDir: string): Promise<string | undefined> {
  const file = endpointFile(dataDir);
  if (!existsSync(file)) return undefined;
  try {
    const ep = JSON.parse(readFileSync(file, 'utf8')) as EndpointFile;
    if (typeof ep.socket === 'string' && ep.pid !== process.pid && pidAlive(ep.pid) && (await canConnect(ep.socket))) return ep.url;
  } catch {
    // unreadable endpoint file: treat as no running server
  }
  return undefined;
}

function acquireLock(dataDir: string): () => void {
  const lock = join(dataDir, 'embedded-db.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(lock, 'utf8'));
      if (holder && pidAlive(holder)) {
        throw new Error(
          `the embedded database in ${dataDir} is in use by process ${holder}; stop it or use another DATA_DIR`,
        );
      }
      rmSync(lock, { force: true });
    }
  }
  throw new Error(`could not lock the embedded database in ${dataDir}`);
}

interface QueuedMessage {
  handlerId: number;
  message: Uint8Array;
  resolve(bytes: number): void;
  reject(err: unknown): void;
  onData(data: Uint8Array): void;
}

interface SocketQueryQueue {
  queue: QueuedMessage[];
  processing: boolean;
  lastHandlerId: number | null;
  processQueue(): Promise<void>;
  clearQueueForHandler(handlerId: number): void;
}

interface ProtocolDb {
  isInTransaction(): boolean;
  runExclusive<T>(fn: () => Promise<T>): Promise<T>;
  execProtocolRawStream(message: Uint8Array, opts: { onRawData: (data: Uint8Array) => void }): Promise<unknown>;
}

// Sync, simple Query and Terminate end a message sequence; the startup message has no type byte.
const SEQUENCE_END = new Set([0x53, 0x51, 0x58, 0x00]);

/**
 * pglite-socket queues every protocol message on its own, so the Parse/Bind/Execute/Sync messages of two
 * connections interleave on PGlite's single session (one query runs another's portal: "portal does not exist",
 * or rows that belong to another query). The queue is kept on one connection from its first message to the
 * end of its sequence (Sync or Query), and for the whole of a transaction, as pglite-socket already does.
 */
function serializeProtocolSequences(server: unknown, db: ProtocolDb): void {
  const q = (server as { queryQueue: SocketQueryQueue }).queryQueue;
  let owner: number | null = null;
  const clear = q.clearQueueForHandler.bind(q);
  q.clearQueueForHandler = (handlerId) => {
    if (owner === handlerId) owner = null;
    clear(handlerId);
  };
  q.processQueue = async function (this: SocketQueryQueue) {
    if (this.processing || this.queue.length === 0) return;
    this.processing = true;
    try {
      while (this.queue.length > 0) {
        const sticky = owner ?? (db.isInTransaction() ? this.lastHandlerId : null);
        const index = sticky === null ? 0 : this.queue.findIndex((m) => m.handlerId === sticky);
        if (index === -1) break; // wait for that connection's next message
        const [item] = this.queue.splice(index, 1);
        let bytes = 0;
        try {
          await db.runExclusive(() =>
            db.execProtocolRawStream(item.message, {
              onRawData: (data) => {
                bytes += data.length;
                item.onData(data);
              },
            }),
          );
        } catch (err) {
          owner = null;
          item.reject(err);
          continue;
        }
        owner = SEQUENCE_END.has(item.message[0]) ? null : item.handlerId;
        this.lastHandlerId = item.handlerId;
        item.resolve(bytes);
      }
    } finally {
      this.processing = false;
    }
  };
}

/**
 * Runs PostgreSQL in-process (PGlite) behind its wire-protocol socket server, so the ordinary `pg` driver,
 * TypeORM and the same migrations work unchanged. The socket is a Unix socket in a directory only this user
 * can enter (see privateSocketDir), never a TCP port: any local user could connect to that. The endpoint is
 * written to DATA_DIR so the CLI (run by the same user) can reach the database through a running server.
 */
export async function startEmbeddedDatabase(dataDir: string, poolSize = EMBEDDED_MAX_CONNECTIONS): Promise<DatabaseHandle> {
  mkdirSync(dataDir, { recursive: true });
  const release = acquireLock(dataDir);
  try {
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
    const { pgcrypto } = await import('@electric-sql/pglite/contrib/pgcrypto');
    // PGlite writes its files world-readable (some world-writable); the directory keeps other users out of them
    makePrivate(join(dataDir, 'pgdata'), 0o700);
    const db = await PGlite.create({ dataDir: join(dataDir, 'pgdata'), extensions: { pgcrypto } });
    const socketDir = privateSocketDir(dataDir);
    const socket = join(socketDir, SOCKET_NAME);
    // a socket left by a process that died: we hold the lock, so nobody else serves it
    rmSync(socket, { force: true });
    const server = new PGLiteSocketServer({ db, path: socket, maxConnections: EMBEDDED_MAX_CONNECTIONS });
    serializeProtocolSequences(server, db as unknown as ProtocolDb);
    await server.start();
    chmodSync(socket, 0o600);
    const url = urlFor(socketDir);
    const ep: EndpointFile = { pid: process.pid, socket, url };
    writeFileSync(endpointFile(dataDir), JSON.stringify(ep) + '\n', { mode: 0o600 });
    return {
      url,
      embedded: true,
      maxPool: Math.min(poolSize, EMBEDDED_MAX_CONNECTIONS - 4),
      async close() {
        rmSync(endpointFile(dataDir), { force: true });
        await server.stop();
        await db.close();
        rmSync(socket, { force: true });
        if (socketDir !== join(dataDir, 'socket')) rmSync(socketDir, { recursive: true, force: true });
        release();
      },
    };
  } catch (err) {
    release();
    throw err;
  }
}

/** DATABASE_URL when given; otherwise a running server's embedded socket; otherwise our own embedded database. */
export async function openDatabase(opts: { databaseUrl?: string; dataDir: string; poolSize: number }): Promise<DatabaseHandle> {
  if (opts.databaseUrl) {
    return { url: opts.databaseUrl, embedded: false, maxPool: opts.poolSize, close: async () => {} };
  }
  const running = await findRunningEmbedded(opts.dataDir);
  if (running) return { url: running, embedded: true, maxPool: 2, close: async () => {} };
  return startEmbeddedDatabase(opts.dataDir, opts.poolSize);
}
