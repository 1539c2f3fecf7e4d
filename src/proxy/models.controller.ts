import { Controller, Get, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { ModelsService } from './models.service';
import { ModelListObject } from './proxy.responses';

@ApiTags('proxy')
@ApiProtected()
@RequireScope('proxy')
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly models: ModelsService) {}

  @Get()
  @ApiOperation({ summary: "List the models the caller's usable upstream keys serve (the union of their upstreams' lists, cached briefly)" })
  @ApiOkResponse({ type: ModelListObject, example: { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' }] } })
  @ApiResponse(apiError(403, 'No upstream API key is configured for this user or organization', 'permission_error', 'no_api_key', 'No upstream API key is configured for this user or organization'))
  @ApiResponse(apiError(502, 'The upstream could not be reached or closed the connection', 'upstream_error', 'upstream_error', 'The upstream could not be reached or closed the connection'))
  async list(@Acting() acting: ActingContext, @Res({ passthrough: true }) res: Response): Promise<unknown> {
    const { body, keySource } = await this.models.list(acting);
    res.setHeader('X-Key-Source', keySource);
    return body;
  }
}
