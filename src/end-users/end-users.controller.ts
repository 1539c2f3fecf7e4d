import { Controller, Delete, Get, Param, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { tokenActor } from '../audit/audit-actor';
import { RequireScope } from '../auth/require-scope.decorator';
import { apiError, ApiProtected } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { ErasureReceiptResponse } from './end-users.responses';
import { EndUsersService, ErasureReceipt } from './end-users.service';
import { sendLines } from './export-lines';

const RECEIPT_EXAMPLE: ErasureReceipt = {
  object: 'user.erasure',
  user_id: 'user@example.com',
  erased: {
    users: 1,
    exchanges: 42,
    ratings: 3,
    analyses: 5,
    analysis_claims: 0,
    keys: 1,
    limits: 1,
    limit_counters: 4,
    tokens: 0,
    upstream_objects: 2,
    audit_events_scrubbed: 0,
    usage_rollups: 2,
  },
  erased_at: '2026-06-05T18:30:00.000Z',
};
const USER_PARAM = { name: 'user_id', description: 'the end user\'s external id (their X-User-ID value), URL-encoded', example: 'user@example.com' };

@ApiTags('end users')
@ApiProtected()
@RequireScope('admin')
@Controller('v1/users')
export class EndUsersController {
  constructor(private readonly endUsers: EndUsersService) {}

  @Get(':user_id/export')
  @ApiOperation({
    summary: "Everything stored of one end user of the organization, as JSON lines",
    description:
      'One JSON object per line, each with a `type`: `user` first, then `exchange`, `rating`, `analysis`, `object` (upstream objects ' +
        'the user made: delete them upstream before erasing, which forgets only their record), `key`, `token` lines, ' +
      'and `end` last (with counts: a reader that does not see it knows the export was cut short).',
  })
  @ApiParam(USER_PARAM)
  @ApiOkResponse({
    description: 'JSON lines: one object per line',
    content: { 'application/x-ndjson': { schema: { type: 'string', example: '{"type":"user",…}\n{"type":"exchange",…}\n{"type":"end",…}\n' } } },
  })
  @ApiResponse(apiError(404, 'No user and no exchange with this external id in the organization', 'not_found_error', 'not_found', "No user found with id 'user@example.com'"))
  async export(@Acting() acting: ActingContext, @Param('user_id') userId: string, @Res() res: Response): Promise<void> {
    await sendLines(res, await this.endUsers.export(acting.orgId, userId));
  }

  @Delete(':user_id')
  @ApiOperation({
    summary: 'Erase an end user: their exchanges, ratings, analyses, keys, limits and counters; answers a receipt with counts',
    description: 'Erasing a user never seen, or already erased, answers a receipt of zeros.',
  })
  @ApiParam(USER_PARAM)
  @ApiOkResponse({ type: ErasureReceiptResponse, example: RECEIPT_EXAMPLE })
  erase(@Acting() acting: ActingContext, @Param('user_id') userId: string): Promise<ErasureReceipt> {
    return this.endUsers.erase(acting.orgId, userId, tokenActor(acting));
  }
}
