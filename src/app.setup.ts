import { INestApplication } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { AppConfig } from './config/app-config';
import { ProxyDispatch } from './proxy/proxy-dispatch';
import { RealtimeGateway } from './realtime/realtime-gateway';
import { BEARER, USER_HEADER } from './common/api-docs';
import { answerClientErrors } from './common/client-errors';
import { AppExceptionFilter } from './common/http-exception.filter';
import { JsonLogger } from './common/logger';
import { RequestBodyInterceptor } from './common/request-body.interceptor';
import type { ProxyRequest } from './common/request-context';
import { startRequest, unreadBodyDiscardBound } from './common/request-start';
import { createValidationPipe } from './common/validation';

/** Everything about the HTTP app that production and the tests share. */
export function configureApp(app: INestApplication, config: AppConfig, logger: JsonLogger): void {
  const express = app.getHttpAdapter().getInstance();
  express.disable('x-powered-by');
  express.set('etag', false);

  const discardBytes = unreadBodyDiscardBound(config.bodyLimitBytes);
  app.use((req: Request, res: Response, next: NextFunction) => {
    startRequest(req as ProxyRequest, res, logger, req.path, discardBytes);
    next();
  });

  const filter = new AppExceptionFilter(logger, config.bodyLimitBytes);
  app.useGlobalFilters(filter);
  // bodies are read after the guards (see RequestBodyInterceptor)
  app.useGlobalInterceptors(new RequestBodyInterceptor(app.get(Reflector), config.bodyLimitBytes));
  app.useGlobalPipes(createValidationPipe());

  // the proxy routes' plain requests are served ahead of Express (see ProxyDispatch)
  const dispatch = app.get(ProxyDispatch);
  dispatch.answerErrorsWith(filter);
  const server = app.getHttpServer() as Server;
  const serving = answerClientErrors(server, filter, logger, config);
  const viaExpress = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (viaExpress.length !== 1) throw new Error(`expected Express as the HTTP server's one request listener, found ${viaExpress.length}`);
  const viaExpressApp = viaExpress[0];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    serving(req, res, pathOf(req.url));
    if (!dispatch.take(req, res)) viaExpressApp(req, res);
  });
  // GET /v1/realtime: a WebSocket upgrade (see RealtimeGateway)
  app.get(RealtimeGateway).attach(server, filter);

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

function pathOf(url: string | undefined): string {
  const q = url?.indexOf('?') ?? -1;
  return q < 0 ? (url ?? '/') : url!.slice(0, q);
}
