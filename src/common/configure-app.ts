import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { json } from 'express';
import { AppConfig } from '../config/app-config';
import { BEARER, USER_HEADER } from './api-docs';
import { AppExceptionFilter } from './http-exception.filter';
import { startRequest } from './request-start';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ProxyDispatch } from '../proxy/proxy-dispatch';
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
    startRequest(req as ProxyRequest, res, logger, req.path);
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

  const filter = new AppExceptionFilter(logger, config.bodyLimitBytes);
  app.useGlobalFilters(filter);
  app.useGlobalInterceptors(new BodyErrorInterceptor(config.bodyLimitBytes));
  app.useGlobalPipes(createValidationPipe());

  // the proxy routes' plain requests are served ahead of Express (see ProxyDispatch)
  const dispatch = app.get(ProxyDispatch);
  dispatch.answerErrorsWith(filter);
  const server = app.getHttpServer() as Server;
  const viaExpress = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (viaExpress.length !== 1) throw new Error(`expected Express as the HTTP server's one request listener, found ${viaExpress.length}`);
  const viaExpressApp = viaExpress[0];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!dispatch.take(req, res)) viaExpressApp(req, res);
  });

  const doc = new DocumentBuilder()
    .setTitle('OpenAI inference proxy')
    .setDescription(
      'An OpenAI-compatible proxy with per-user upstream keys, durable exchange records, ratings, personas, ' +
        'conversation analysis and analytics.\n\n' +
        'Authorize with a JWT and an X-User-ID (the end user the call acts for). Make a token with the admin CLI: ' +
        '`npm run -s cli -- jwt create --org-id <org-id>` in the project, or `openai-proxy jwt create --org-id <org-id>` ' +
        'when installed (`org create <name>` prints an organization id; `key create <org-id> <api-key>` gives it an upstream key). ' +
        'Errors always come in the OpenAI error envelope (ErrorEnvelope).',
    )
    .setVersion('0.1.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, BEARER)
    .addApiKey({ type: 'apiKey', in: 'header', name: USER_HEADER, description: 'The end user the call acts for' }, USER_HEADER)
    .build();
  const document = SwaggerModule.createDocument(app, doc);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', swaggerOptions: { persistAuthorization: true } });
}
