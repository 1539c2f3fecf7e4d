'use strict';
/**
 * The floor: the least a Node.js proxy can do. node:http in front, one undici keep-alive Pool behind, no features:
 * read the body, forward it with a fixed key, pipe the answer back (streams piped as they come).
 * Whatever the real proxy costs above this is the price of its features.
 *
 *   node bench/floor.js --upstream http://127.0.0.1:PORT/v1 [--port 0] [--host 127.0.0.1]
 * prints `floor listening on http://127.0.0.1:PORT`.
 */
const http = require('node:http');
const { pipeline } = require('node:stream');
const { Pool } = require('undici');

function parseArgs(argv) {
  const out = { port: 0, host: '127.0.0.1', upstream: undefined, key: 'sk-floor-0000000000000000' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') out.port = Number(argv[++i]);
    else if (a === '--host') out.host = argv[++i];
    else if (a === '--upstream') out.upstream = argv[++i];
    else if (a === '--key') out.key = argv[++i];
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!out.upstream) throw new Error('--upstream is required');
  return out;
}

function startFloor({ port, host, upstream, key }) {
  const u = new URL(upstream);
  // `/v1` of the incoming path maps onto the upstream's base path (which already ends in /v1)
  const basePath = u.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  const pool = new Pool(u.origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });
  const authorization = `Bearer ${key}`;

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      pool.request(
        {
          method: req.method,
          path: basePath + req.url,
          headers: { authorization, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
        },
        (err, up) => {
          if (res.destroyed) {
            // the client left while upstream was answering
            if (up) up.body.destroy();
            return;
          }
          if (err) {
            res.writeHead(502, { 'content-type': 'application/json' });
            res.end('{"error":{"message":"upstream failed","type":"upstream_error","code":null,"param":null}}');
            return;
          }
          const headers = { 'content-type': up.headers['content-type'] || 'application/json' };
          if (up.headers['content-length'] !== undefined) headers['content-length'] = up.headers['content-length'];
          res.writeHead(up.statusCode, headers);
          pipeline(up.body, res, () => {});
        },
      );
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.listen(port, host, () => resolve({ server, pool, port: server.address().port }));
  });
}

module.exports = { startFloor };

if (require.main === module) {
  const opts = parseArgs(process.argv.slice(2));
  startFloor(opts).then(({ server, pool, port }) => {
    process.stdout.write(`floor listening on http://${opts.host}:${port}\n`);
    const stop = () => {
      server.close();
      server.closeAllConnections?.();
      pool.close().finally(() => process.exit(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
