import 'reflect-metadata';
import { loadTokenCounter } from './common/token-count';
import { ConfigError, loadConfig } from './config/app-config';
import { RunningServer, SHUTDOWN_CLEANUP_MS, startServer } from './server';

/** A second signal within this time of the first is the same request to stop, delivered twice. */
const REPEAT_SIGNAL_MS = 1000;

/** Starts the server and stops it on SIGTERM/SIGINT within SHUTDOWN_TIMEOUT_MS + SHUTDOWN_CLEANUP_MS. */
export function main(): void {
  run().catch((err: unknown) => {
    process.stderr.write(`openai-proxy: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

async function run(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`openai-proxy: configuration error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const bound = config.shutdownTimeoutMs + SHUTDOWN_CLEANUP_MS;
  let server: RunningServer | undefined;
  let signalled: NodeJS.Signals | undefined;
  let signalledAt = 0;
  const shutdown = (running: RunningServer, signal: NodeJS.Signals) => {
    running.logger.write('info', 'shutting down', { signal, timeout_ms: config.shutdownTimeoutMs });
    // whatever hangs in the app's own shutdown (a pool that does not close), the process is gone by the bound
    setTimeout(() => {
      running.logger.write('error', 'shutdown: did not finish in time, exiting', { bound_ms: bound });
      process.exit(1);
    }, bound).unref();
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        running.logger.write('error', 'shutdown failed', { error: err instanceof Error ? err.message : String(err) });
        process.exit(1);
      },
    );
  };
  // listening for signals from the start: one that arrives while the server starts stops it once it is up
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      // Ctrl-C under `npm start` arrives twice at once (from the terminal and forwarded by npm): only a
      // signal sent again later means the operator does not want to wait for the drain
      if (performance.now() - signalledAt < REPEAT_SIGNAL_MS) return;
      process.stderr.write(`openai-proxy: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    signalled = signal;
    signalledAt = performance.now();
    if (server) shutdown(server, signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // before the server listens: loaded by the first call that needs an estimate, it held up every call in flight
  const tokenCounterLoadMs = loadTokenCounter();
  server = await startServer(config, { startup: { token_counter_load_ms: Math.round(tokenCounterLoadMs) } });
  if (signalled) shutdown(server, signalled);
}
