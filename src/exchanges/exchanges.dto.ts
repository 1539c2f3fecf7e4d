import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsString, IsUUID, Matches, MaxLength } from 'class-validator';
import { IsInstant } from '../common/dates';
import { NO_NUL, OptionalParam, PageQueryDto } from '../common/pagination';

const noNul = (param: string) => Matches(NO_NUL, { message: `${param} must not contain NUL characters` });

/** The filters of `GET /v1/requests`. */
export class ListExchangesQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ description: 'only this session' })
  @OptionalParam()
  @IsString()
  @MaxLength(256)
  @noNul('session_id')
  session_id?: string;

  @ApiPropertyOptional({ description: 'only this end user (the X-User-ID value)' })
  @OptionalParam()
  @IsString()
  @MaxLength(256)
  @noNul('user_id')
  user_id?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'only calls made with this persona' })
  @OptionalParam()
  @IsUUID('all', { message: 'persona_id must be a UUID' })
  persona_id?: string;

  @ApiPropertyOptional({ description: 'only calls that asked for this model' })
  @OptionalParam()
  @IsString()
  @MaxLength(256)
  @noNul('model')
  model?: string;

  @ApiPropertyOptional({ description: 'ISO-8601, inclusive; a time without a zone is UTC', example: '2026-06-05T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  from?: string;

  @ApiPropertyOptional({ description: 'ISO-8601, exclusive; a time without a zone is UTC', example: '2026-06-06T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  to?: string;
}
