import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsString, IsUUID, Matches, MaxLength } from 'class-validator';
import { IsInstant } from '../common/dates';
import { NO_NUL, OptionalParam, PageQueryDto } from '../common/pagination';
import { EXCHANGE_STATUSES } from './recorder/exchange-record';

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

  @ApiPropertyOptional({ description: 'only this route: the record\'s endpoint (responses, chat.completions, embeddings, files, …)', example: 'responses' })
  @OptionalParam()
  @IsString()
  @MaxLength(256)
  @noNul('endpoint')
  endpoint?: string;

  @ApiPropertyOptional({ enum: EXCHANGE_STATUSES, description: 'only exchanges with this status', example: 'completed' })
  @OptionalParam()
  @IsIn(EXCHANGE_STATUSES, { message: `status must be one of ${EXCHANGE_STATUSES.join(', ')}` })
  status?: string;

  @ApiPropertyOptional({ enum: ['1', '2', '3', '4', '5'], description: 'only exchanges someone rated with this rating (1–5)' })
  @OptionalParam()
  @IsIn(['1', '2', '3', '4', '5'], { message: 'rating must be an integer between 1 and 5' })
  rating?: string;

  @ApiPropertyOptional({ description: 'only exchanges an analysis put in this primary category', example: 'technical_support' })
  @OptionalParam()
  @IsString()
  @MaxLength(256)
  @noNul('analysis_category')
  analysis_category?: string;
}
