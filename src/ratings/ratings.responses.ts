import { ApiProperty } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';
import type { RatingView } from './ratings.dto';

@ApiObject('Rating')
export class RatingResponse implements RatingView {
  @ApiProperty({ example: 'req_Xk3v9QmT2bLp8WzR4nYc7HdA', description: 'the rated exchange' })
  request_id!: string;

  @ApiProperty({ type: String, nullable: true, example: 'resp_67ccd2bed1ec8190b14f964abc054267', description: "the exchange's upstream response id" })
  response_id!: string | null;

  @ApiProperty({ example: 'user@example.com', description: 'the X-User-ID of the rater' })
  user_id!: string;

  @ApiProperty({ type: 'integer', minimum: 1, maximum: 5, example: 5 })
  rating!: number;

  @ApiProperty({ type: String, nullable: true, example: null })
  comment!: string | null;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  rated_at!: string;
}
