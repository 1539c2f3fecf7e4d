import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsDefined, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';

export const RATING_COMMENT_MAX = 2000;

export class RateExchangeDto {
  /** a JSON integer only: implicit conversion is off, so "5" and 3.5 fail IsInt */
  @ApiProperty({ example: 5, minimum: 1, maximum: 5, type: 'integer' })
  @IsDefined({ message: 'rating is required' })
  @IsInt({ message: 'rating must be an integer from 1 to 5' })
  @Min(1, { message: 'rating must be an integer from 1 to 5' })
  @Max(5, { message: 'rating must be an integer from 1 to 5' })
  rating: number;

  @ApiPropertyOptional({ type: String, example: 'Solved my problem', maxLength: RATING_COMMENT_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(RATING_COMMENT_MAX)
  comment?: string | null;
}

export interface RatingView {
  request_id: string;
  response_id: string | null;
  user_id: string;
  rating: number;
  comment: string | null;
  rated_at: string;
}
