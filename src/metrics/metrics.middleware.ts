import { Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { MetricsService } from './metrics.service';

/**
 * Counts every HTTP request by its route template (`/v1/requests/:id`, never the concrete path), so label values stay
 * bounded; a path no route matched is 'unmatched'.
 */
@Injectable()
export class MetricsMiddleware implements NestMiddleware {
  constructor(private readonly metrics: MetricsService) {}

  use(req: Request, res: Response, next: NextFunction): void {
    const started = performance.now();
    res.once('finish', () => {
      const route = (req.route as { path?: unknown } | undefined)?.path;
      this.metrics.observeHttp(req.method, typeof route === 'string' ? route : 'unmatched', res.statusCode, (performance.now() - started) / 1000);
    });
    next();
  }
}
