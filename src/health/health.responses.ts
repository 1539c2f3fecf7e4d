import { ApiProperty } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';

@ApiObject('Health')
export class HealthResponse {
  @ApiProperty({ enum: ['ok', 'unavailable'], example: 'ok', description: 'unavailable comes with status 503 and Retry-After' })
  status!: string;

  @ApiProperty({ enum: ['ok', 'unreachable'], example: 'ok' })
  database!: string;
}
