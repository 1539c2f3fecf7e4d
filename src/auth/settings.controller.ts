import { Body, Controller, Get, Patch } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { tokenActor } from '../audit/audit-actor';
import { ApiProtected, apiError } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { OrganizationsService } from './organizations.service';
import { RequireScope } from './require-scope.decorator';
import { UpdateSettingsDto } from './settings.dto';
import { SETTINGS_EXAMPLE, SettingsResponse } from './settings.responses';

@ApiTags('settings')
@ApiProtected()
@RequireScope('admin')
@Controller('v1/settings')
export class SettingsController {
  constructor(private readonly orgs: OrganizationsService) {}

  @Get()
  @ApiOperation({ summary: "The token's organization's privacy settings: capture mode, retention, safety_identifier" })
  @ApiOkResponse({ type: SettingsResponse, example: SETTINGS_EXAMPLE })
  get(@Acting() acting: ActingContext): Promise<SettingsResponse> {
    return this.orgs.settings(acting.orgId);
  }

  @Patch()
  @ApiOperation({
    summary: 'Change privacy settings (fields left out keep their value)',
    description:
      'capture_mode: full | redacted | metadata. content_retention_days (bodies and text) and retention_days (whole exchanges): ' +
      'days, or null to keep; content retention cannot exceed exchange retention. Each change is in the audit log.',
  })
  @ApiBody({
    type: UpdateSettingsDto,
    examples: {
      redact: { summary: 'redact personal data, keep bodies 30 days and exchanges a year', value: { capture_mode: 'redacted', content_retention_days: 30, retention_days: 365 } },
      safety: { summary: "send OpenAI a safety_identifier per end user", value: { safety_identifier: true } },
    },
  })
  @ApiOkResponse({ type: SettingsResponse, example: SETTINGS_EXAMPLE })
  @ApiResponse(
    apiError(400, 'A bad value', 'invalid_request_error', null, 'content retention (60 days) cannot be longer than exchange retention (30 days)', 'content_retention_days'),
  )
  update(@Acting() acting: ActingContext, @Body() body: UpdateSettingsDto): Promise<SettingsResponse> {
    return this.orgs.updateSettings(acting.orgId, body, tokenActor(acting));
  }
}
