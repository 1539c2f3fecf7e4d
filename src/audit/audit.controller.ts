import { Controller, Get, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected } from '../common/api-docs';
import { parseInstant } from '../common/dates';
import { ListPage, pageOf } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { AUDIT_EVENT_EXAMPLE, AuditEventView, ListAuditQueryDto } from './audit.dto';
import { AuditEventList } from './audit.responses';
import { AuditService } from './audit.service';

@ApiTags('audit')
@ApiProtected()
@RequireScope('admin')
@Controller('v1/audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @ApiOperation({ summary: "The organization's audit log: every administrative change, newest first" })
  @ApiOkResponse({
    type: AuditEventList,
    example: { object: 'list', data: [AUDIT_EVENT_EXAMPLE], has_more: false, first_id: AUDIT_EVENT_EXAMPLE.id, last_id: AUDIT_EVENT_EXAMPLE.id },
  })
  list(@Acting() acting: ActingContext, @Query() query: ListAuditQueryDto): Promise<ListPage<AuditEventView>> {
    return this.audit.list({
      orgId: acting.orgId,
      ...pageOf(query),
      action: query.action || undefined,
      from: parseInstant(query.from, 'from'),
      to: parseInstant(query.to, 'to'),
    });
  }
}
