import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { json } from 'express';
import { AppConfig } from '../config/app-config';
import { BEARER, USER_HEADER } from './api-docs';
import { AppExceptionFilter } from './http-exception.filter';
import { newRequestId } from './ids';
import { JsonLogger } from './logger';
import type { ProxyRequest } from './request-context';
import { BodyErrorInterceptor } from './body-error.interceptor';
import { createValidationPipe } from './validation';

/** Everything about the HTTP app that production and the tests share. */
export function configureApp(app: INestApplication, config: AppConfig, logger: JsonLogger): void {
  const express = app.getHttpAdapter().getInstance();
  express.disable('x-powered-by');
  express.set('etag', false);

  app.use((req: Request, res: Response, next: NextFunction) => {
    const r = req as ProxyRequest;
    r.startedAt = performance.now();
    r.requestId = newRequestId();
    res.setHeader('X-Request-ID', r.requestId);
    if (logger.enabled('info')) {
      res.on('finish', () => {
        logger.write('info', 'request', {
          request_id: r.requestId,
          method: req.method,
          path: req.path,
          status: res.statusCode,
          duration_ms: Math.round((performance.now() - r.startedAt) * 100) / 100,
          org_id: r.acting?.orgId,
        });
      });
    }
    next();
  });

  // Body errors are kept on the request and raised after the guards, so a call without a token is 401
  // whatever else is wrong with it. The raw bytes are kept for forwarding unchanged.
  const parser = json({
    limit: config.bodyLimitBytes,
    type: ['application/json', 'application/*+json'],
    verify: (req, _res, buf) => {
      (req as ProxyRequest).rawBody = buf;
    },
  });
  app.use((req: Request, res: Response, next: NextFunction) => {
    parser(req, res, (err?: unknown) => {
      if (err) (req as ProxyRequest).bodyError = err as ProxyRequest['bodyError'];
      next();
    });
  });

  app.useGlobalFilters(new AppExceptionFilter(logger, config.bodyLimitBytes));
  app.useGlobalInterceptors(new BodyErrorInterceptor(config.bodyLimitBytes));
  app.useGlobalPipes(createValidationPipe());

  const doc = new DocumentBuilder()
    .setTitle('OpenAI inference proxy')
    .setDescription(
      'An OpenAI-compatible proxy with per-user upstream keys, durable exchange records, ratings, personas, ' +
        'conversation analysis and analytics. Authorize with a JWT (from `cli jwt create`) and an X-User-ID.',
    )
    .setVersion('0.1.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, BEARER)
    .addApiKey({ type: 'apiKey', in: 'header', name: USER_HEADER, description: 'The end user the call acts for' }, USER_HEADER)
    .build();
  const document = SwaggerModule.createDocument(app, doc);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', swaggerOptions: { persistAuthorization: true } });
}
