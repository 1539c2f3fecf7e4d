import { ApiProperty } from '@nestjs/swagger';
import { CAPTURE_MODES, type CaptureMode } from './org-privacy';

export class SettingsResponse {
  @ApiProperty({ example: 'organization.settings' })
  object: 'organization.settings';

  @ApiProperty({ example: '9b2f4c1e-5d3a-4f7b-8c6d-1e2f3a4b5c6d' })
  organization_id: string;

  @ApiProperty({ enum: CAPTURE_MODES, example: 'redacted' })
  capture_mode: CaptureMode;

  @ApiProperty({ type: Number, nullable: true, example: 30 })
  content_retention_days: number | null;

  @ApiProperty({ type: Number, nullable: true, example: 365 })
  retention_days: number | null;

  @ApiProperty({ example: true })
  safety_identifier: boolean;
}

export const SETTINGS_EXAMPLE: SettingsResponse = {
  object: 'organization.settings',
  organization_id: '9b2f4c1e-5d3a-4f7b-8c6d-1e2f3a4b5c6d',
  capture_mode: 'redacted',
  content_retention_days: 30,
  retention_days: 365,
  safety_identifier: true,
};
