import { Controller, Get, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Public } from '../auth/public.decorator';
import { AppException } from '../common/app-exception';
import { ConsoleFiles } from './console-files';

/**
 * Forbids inline scripts and every outside origin: the console's own scripts, styles, images and fonts, and its data
 * from this server's /v1 API. Inline style attributes stay allowed (the component and chart libraries set them).
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The console's static files at /console (no token: the application signs in against /v1 itself). */
@ApiExcludeController()
@Public()
@Controller('console')
export class ConsoleController {
  constructor(private readonly files: ConsoleFiles) {}

  @Get()
  root(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.serve(req, res);
  }

  @Get('*path')
  any(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.serve(req, res);
  }

  private async serve(req: Request, res: Response): Promise<void> {
    if (!this.files.present) {
      throw new AppException('not_found', 'The console is not part of this installation: dist/console was not built (run npm run build); the /v1 API works without it', {
        code: 'console_not_built',
      });
    }
    const sub = req.path.replace(/^\/console\/?/, '');
    const file = await this.files.file(sub);
    if (!file) throw new AppException('not_found', `No console file at ${req.path}`, { code: 'not_found' });
    res.setHeader('Content-Security-Policy', CONSOLE_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    res.setHeader('Content-Type', file.type);
    res.setHeader('Content-Length', String(file.body.length));
    res.status(200).end(req.method === 'HEAD' ? undefined : file.body);
  }
}
