import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { ApiModelAnswer, OpenAIResponseObject } from '../proxy/proxy.responses';
import { ResponsesService } from './responses.service';

const RESPONSE_EXAMPLE = {
  id: 'resp_67ccd2bed1ec8190b14f964abc054267',
  object: 'response',
  status: 'completed',
  background: true,
  model: 'gpt-4o-mini-2024-07-18',
  output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello!', annotations: [] }] }],
  usage: { input_tokens: 9, output_tokens: 2, total_tokens: 11 },
};
const RESUMED_EVENTS =
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_67ccd3a9","output_index":0,"content_index":0,"delta":"!"}\n\n' +
  'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_67ccd2bed1ec8190b14f964abc054267","object":"response","status":"completed"}}\n\n';

const queryOf = (url: string) => {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
};

@ApiTags('responses')
@ApiProtected()
@RequireScope('proxy')
@Controller('v1')
export class ResponsesController {
  constructor(private readonly responses: ResponsesService) {}

  @Get('responses/:response_id')
  @ApiOperation({
    summary: 'A response made through the proxy',
    description:
      'A finished response comes from its stored record. One still running upstream (`background: true`) comes from upstream, ' +
      'with the key that made it, and completes its record once it has ended. `stream=true` resumes its event stream upstream ' +
      '(after `starting_after`, a sequence number). The query string goes upstream as it came (`include[]`, `include_obfuscation`, …). ' +
      "A response made with a user's own key is that user's only; one made with an organization key is every user's of the organization.",
  })
  @ApiParam({ name: 'response_id', example: RESPONSE_EXAMPLE.id })
  @ApiQuery({ name: 'stream', required: false, type: Boolean, description: 'resume the response’s event stream upstream' })
  @ApiQuery({ name: 'starting_after', required: false, type: Number, description: 'with stream=true: the sequence number of the last event received' })
  @ApiQuery({ name: 'include[]', required: false, type: [String], description: 'forwarded upstream (fields to add to the response object)' })
  @ApiModelAnswer('The response object (or, with stream=true, its events as server-sent events)', OpenAIResponseObject, RESPONSE_EXAMPLE, RESUMED_EVENTS)
  @ApiResponse(apiError(400, 'A malformed stream or starting_after', 'invalid_request_error', null, 'starting_after must be a non-negative integer', 'starting_after'))
  @ApiResponse(apiError(404, 'Unknown id, one of another organization, or one made with another user’s own key', 'not_found_error', 'not_found', "No response found with id 'resp_…'"))
  @ApiResponse(apiError(502, 'The upstream could not be reached (a response still running)', 'upstream_error', 'upstream_error', 'The upstream could not be reached or closed the connection'))
  async response(@Acting() acting: ActingContext, @Param('response_id') responseId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    await this.responses.retrieve(acting, responseId, queryOf(req.originalUrl), res);
  }
}
