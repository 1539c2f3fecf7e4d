import 'reflect-metadata';
import { ConfigError, loadConfig } from './config/app-config';
import { startServer } from './server';

async function main(): Promise<void> {
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
  const server = await startServer(config);
  const stop = () => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`openai-proxy: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
