import { Controller, Get, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Public } from '../auth/public.decorator';
import { HealthService } from './health.service';
import { HealthResponse } from './health.responses';

@ApiTags('health')
@Controller()
export class HealthController {
  constructor(private readonly health: HealthService) {}

  @Public()
  @Get('health')
  @ApiOperation({ summary: 'Liveness and database check (no token needed)' })
  @ApiOkResponse({ type: HealthResponse, example: { status: 'ok', database: 'ok' } })
  async check(@Res({ passthrough: true }) res: Response): Promise<{ status: string; database: string }> {
    const ok = await this.health.databaseOk();
    if (!ok) {
      res.status(503).setHeader('Retry-After', '2');
      return { status: 'unavailable', database: 'unreachable' };
    }
    return { status: 'ok', database: 'ok' };
  }
}
