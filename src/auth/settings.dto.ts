import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsOptional, Max, Min, ValidateIf } from 'class-validator';
import { CAPTURE_MODES, type CaptureMode, MAX_RETENTION_DAYS } from './org-privacy';

/** `PATCH /v1/settings`: every field optional; a retention of null keeps data forever. */
export class UpdateSettingsDto {
  @ApiPropertyOptional({ enum: CAPTURE_MODES, example: 'redacted', description: 'what is stored of each exchange' })
  @ValidateIf((o: UpdateSettingsDto) => o.capture_mode !== undefined)
  @IsIn(CAPTURE_MODES, { message: `capture_mode must be one of ${CAPTURE_MODES.join(', ')}` })
  capture_mode?: CaptureMode;

  @ApiPropertyOptional({ type: Number, nullable: true, minimum: 1, maximum: MAX_RETENTION_DAYS, example: 30, description: 'days after which bodies and text are cleared; null keeps them' })
  @IsOptional()
  @IsInt({ message: 'content_retention_days must be a whole number of days or null' })
  @Min(1)
  @Max(MAX_RETENTION_DAYS)
  content_retention_days?: number | null;

  @ApiPropertyOptional({ type: Number, nullable: true, minimum: 1, maximum: MAX_RETENTION_DAYS, example: 365, description: 'days after which whole exchanges (with their ratings and analyses) are deleted; null keeps them' })
  @IsOptional()
  @IsInt({ message: 'retention_days must be a whole number of days or null' })
  @Min(1)
  @Max(MAX_RETENTION_DAYS)
  retention_days?: number | null;

  @ApiPropertyOptional({ example: true, description: "add OpenAI's safety_identifier (a keyed hash of organization and end user) to model calls that lack one" })
  @ValidateIf((o: UpdateSettingsDto) => o.safety_identifier !== undefined)
  @IsBoolean({ message: 'safety_identifier must be true or false' })
  safety_identifier?: boolean;
}
