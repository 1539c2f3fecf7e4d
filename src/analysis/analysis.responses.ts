import { ApiProperty } from '@nestjs/swagger';
import { ApiObject, ListOf } from '../common/api-docs';
import {
  ANALYSIS_TYPES,
  type AnalysisCategoryView,
  type AnalysisConfigView,
  type AnalysisMetadata,
  type AnalysisResultView,
  type AnalysisType,
  type CategoryScore,
} from './analysis.dto';

@ApiObject('AnalysisCategory')
class AnalysisCategoryResponse implements AnalysisCategoryView {
  @ApiProperty({ example: 'technical_support' })
  name!: string;

  @ApiProperty({ type: String, nullable: true, example: 'Bugs, crashes, error messages' })
  description!: string | null;
}

@ApiObject('AnalysisConfig')
export class AnalysisConfigResponse implements AnalysisConfigView {
  @ApiProperty({ format: 'uuid', example: '550e8400-e29b-41d4-a716-446655440000' })
  id!: string;

  @ApiProperty({ example: 'Customer Support Intent Classifier' })
  name!: string;

  @ApiProperty({ enum: ANALYSIS_TYPES, example: 'intent' })
  analysis_type!: AnalysisType;

  @ApiProperty({ type: [AnalysisCategoryResponse], description: 'as given, or the defaults of sentiment and urgency' })
  categories!: AnalysisCategoryView[];

  @ApiProperty({ type: String, nullable: true, example: 'Focus on what the customer wants.' })
  instructions!: string | null;

  @ApiProperty({ example: 'gpt-4o-mini' })
  model!: string;

  @ApiProperty({ example: true })
  include_metadata!: boolean;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  created_at!: string;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  updated_at!: string;
}

@ApiObject('CategoryScore')
class CategoryScoreResponse implements CategoryScore {
  @ApiProperty({ example: 'technical_support' })
  name!: string;

  @ApiProperty({ minimum: 0, maximum: 1, example: 0.92 })
  score!: number;

  @ApiProperty({ example: 'User mentions app crashes and error messages' })
  reasoning!: string;
}

@ApiObject('AnalysisMetadata')
class AnalysisMetadataResponse implements AnalysisMetadata {
  @ApiProperty({ example: 'frustrated' })
  sentiment!: string;

  @ApiProperty({ example: 'high' })
  urgency!: string;

  @ApiProperty({ type: [String], example: ['error_handling', 'app_stability'] })
  topics!: string[];
}

@ApiObject('AnalysisUsage')
class AnalysisUsageResponse {
  @ApiProperty({ type: 'integer', example: 212 })
  input_tokens!: number;

  @ApiProperty({ type: 'integer', example: 27 })
  output_tokens!: number;

  @ApiProperty({ type: 'integer', example: 239 })
  total_tokens!: number;
}

@ApiObject('AnalysisResult')
export class AnalysisResultResponse implements AnalysisResultView {
  @ApiProperty({ format: 'uuid' })
  id!: string;

  @ApiProperty({ example: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N' })
  request_id!: string;

  @ApiProperty({ type: String, nullable: true, example: 'resp_67ccd2bed1ec8190b14f964abc054267' })
  response_id!: string | null;

  @ApiProperty({ type: String, nullable: true, format: 'uuid', description: 'null for an inline configuration' })
  config_id!: string | null;

  @ApiProperty({ enum: ANALYSIS_TYPES, example: 'intent' })
  analysis_type!: AnalysisType;

  @ApiProperty({ example: 'technical_support', description: 'the first of categories' })
  primary_category!: string;

  @ApiProperty({ minimum: 0, maximum: 1, example: 0.92, description: "the primary category's score" })
  confidence!: number;

  @ApiProperty({ example: 'The user is experiencing technical issues with the application' })
  reasoning!: string;

  @ApiProperty({ type: [CategoryScoreResponse], description: 'every configured category once, highest score first' })
  categories!: CategoryScore[];

  @ApiProperty({ type: AnalysisMetadataResponse, nullable: true, description: 'with include_metadata only' })
  metadata!: AnalysisMetadata | null;

  @ApiProperty({ example: 'gpt-4o-mini' })
  model!: string;

  @ApiProperty({ type: AnalysisUsageResponse })
  usage!: AnalysisUsageResponse;

  @ApiProperty({ type: Number, nullable: true, example: 0.000048, description: 'USD; 0 when cached; null when the model has no known price' })
  cost!: number | null;

  @ApiProperty({ example: false })
  cached!: boolean;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:31:02.000Z' })
  created_at!: string;
}

export const AnalysisConfigList = ListOf(AnalysisConfigResponse, 'AnalysisConfigList');
export const AnalysisResultList = ListOf(AnalysisResultResponse, 'AnalysisResultList');
