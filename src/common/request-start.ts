import type { ServerResponse } from 'node:http';
import { newRequestId } from './ids';
import { JsonLogger } from './logger';
import type { RequestState } from './request-context';

// load balancers and Prometheus call these every few seconds: an answered probe is logged at debug only
const PROBE_PATHS = new Set(['/health', '/metrics']);

/** Every request: its id (X-Request-ID) and start time, and at info level one log line when it is answered. */
export function startRequest(req: RequestState & { method?: string }, res: ServerResponse, logger: JsonLogger, path: string): void {
  req.startedAt = performance.now();
  req.requestId = newRequestId();
  res.setHeader('X-Request-ID', req.requestId);
  if (logger.enabled('info')) {
    res.on('finish', () => {
      logger.write(PROBE_PATHS.has(path) && res.statusCode < 400 ? 'debug' : 'info', 'request', {
        request_id: req.requestId,
        method: req.method,
        path,
        status: res.statusCode,
        duration_ms: Math.round((performance.now() - req.startedAt) * 100) / 100,
        org_id: req.acting?.orgId,
      });
    });
  }
}
