import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { tokenActor } from '../audit/audit-actor';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { ListPage, PageQueryDto, pageOf } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { AnalysisConfigsService } from './analysis-configs.service';
import { AnalysisConfigList, AnalysisConfigResponse } from './analysis.responses';
import { AnalysisConfigView, CONFIG_EXAMPLE, CreateAnalysisConfigDto, UpdateAnalysisConfigDto } from './analysis.dto';

const notFound = apiError(404, 'Unknown configuration (or one of another organization)', 'not_found_error', 'not_found', "No analysis configuration found with id '…'");
const invalid = apiError(400, 'Validation error; `param` names the field', 'invalid_request_error', null, "category names must be unique; 'billing' appears twice", 'categories');

@ApiTags('analysis')
@ApiProtected()
@Controller('v1/analysis/configs')
export class AnalysisConfigsController {
  constructor(private readonly configs: AnalysisConfigsService) {}

  @RequireScope('manage')
  @Post()
  @ApiOperation({ summary: 'Create an analysis configuration' })
  @ApiBody({
    type: CreateAnalysisConfigDto,
    examples: {
      intent: {
        value: {
          name: 'Customer Support Intent Classifier',
          analysis_type: 'intent',
          categories: [
            { name: 'technical_support', description: 'Bugs, crashes, error messages' },
            { name: 'billing_inquiry', description: 'Invoices, charges, refunds' },
            { name: 'feature_request' },
          ],
          instructions: 'Focus on what the customer wants.',
          include_metadata: true,
        },
      },
      sentiment: { value: { name: 'Sentiment', analysis_type: 'sentiment' } },
    },
  })
  @ApiCreatedResponse({ type: AnalysisConfigResponse, example: CONFIG_EXAMPLE })
  @ApiResponse(invalid)
  create(@Acting() acting: ActingContext, @Body() dto: CreateAnalysisConfigDto): Promise<AnalysisConfigView> {
    return this.configs.create(acting.orgId, dto, tokenActor(acting));
  }

  @RequireScope('read')
  @Get()
  @ApiOperation({ summary: "List the organization's analysis configurations, newest first" })
  @ApiOkResponse({ type: AnalysisConfigList, example: { object: 'list', data: [CONFIG_EXAMPLE], has_more: false, first_id: CONFIG_EXAMPLE.id, last_id: CONFIG_EXAMPLE.id } })
  list(@Acting() acting: ActingContext, @Query() query: PageQueryDto): Promise<ListPage<AnalysisConfigView>> {
    return this.configs.list(acting.orgId, pageOf(query));
  }

  @RequireScope('read')
  @Get(':id')
  @ApiOperation({ summary: 'Get an analysis configuration' })
  @ApiOkResponse({ type: AnalysisConfigResponse, example: CONFIG_EXAMPLE })
  @ApiResponse(notFound)
  get(@Acting() acting: ActingContext, @Param('id') id: string): Promise<AnalysisConfigView> {
    return this.configs.get(acting.orgId, id);
  }

  @RequireScope('manage')
  @Patch(':id')
  @ApiOperation({ summary: 'Change an analysis configuration (later analyses with it no longer hit results cached before the change)' })
  @ApiBody({ type: UpdateAnalysisConfigDto, examples: { instructions: { value: { instructions: 'Treat refund requests as billing.' } } } })
  @ApiOkResponse({ type: AnalysisConfigResponse, example: CONFIG_EXAMPLE })
  @ApiResponse(invalid)
  @ApiResponse(notFound)
  update(@Acting() acting: ActingContext, @Param('id') id: string, @Body() dto: UpdateAnalysisConfigDto): Promise<AnalysisConfigView> {
    return this.configs.update(acting.orgId, id, dto, tokenActor(acting));
  }

  @RequireScope('manage')
  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete an analysis configuration (its stored results stay)' })
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiResponse(notFound)
  async remove(@Acting() acting: ActingContext, @Param('id') id: string): Promise<void> {
    await this.configs.remove(acting.orgId, id, tokenActor(acting));
  }
}
