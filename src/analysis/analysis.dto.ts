import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsObject,
  IsOptional,
  IsString,
  Length,
  Matches,
  MaxLength,
  ValidateIf,
  ValidateNested,
} from 'class-validator';
import { UUID_RE } from '../common/ids';
import { NO_NUL, OptionalParam, PageQueryDto } from '../common/pagination';

export const ANALYSIS_TYPES = ['intent', 'sentiment', 'urgency', 'custom'] as const;
export type AnalysisType = (typeof ANALYSIS_TYPES)[number];

export const CONFIG_NAME_MAX = 200;
export const CATEGORY_NAME_MAX = 100;
export const CATEGORY_DESCRIPTION_MAX = 1000;
export const MAX_CATEGORIES = 50;
export const INSTRUCTIONS_MAX = 10_000;
export const MODEL_MAX = 200;
export const DEFAULT_ANALYSIS_MODEL = 'gpt-4o-mini';

/** letters, digits, `_`, `-` and inner spaces: the names become a JSON-schema enum the model must echo exactly */
const CATEGORY_NAME_RE = /^[A-Za-z0-9_-](?:[A-Za-z0-9_\- ]*[A-Za-z0-9_-])?$/;
const NOT_BLANK = /\S/;
const NO_WHITESPACE = /^\S+$/;

export class AnalysisCategoryDto {
  @ApiProperty({ example: 'technical_support', minLength: 1, maxLength: CATEGORY_NAME_MAX, pattern: CATEGORY_NAME_RE.source })
  @IsString()
  @Length(1, CATEGORY_NAME_MAX)
  @Matches(CATEGORY_NAME_RE, { message: 'a category name may hold only letters, digits, _, - and inner spaces' })
  name: string;

  @ApiPropertyOptional({ example: 'Bugs, crashes, error messages, things that do not work', maxLength: CATEGORY_DESCRIPTION_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(CATEGORY_DESCRIPTION_MAX)
  description?: string | null;
}

/** The fields that define an analysis (everything but the name); shared by saved and inline configurations. */
export class AnalysisDefinitionDto {
  @ApiProperty({ enum: ANALYSIS_TYPES, example: 'intent' })
  @IsIn(ANALYSIS_TYPES, { message: `analysis_type must be one of ${ANALYSIS_TYPES.join(', ')}` })
  analysis_type: AnalysisType;

  @ApiPropertyOptional({
    type: [AnalysisCategoryDto],
    description: 'Required for intent and custom; sentiment and urgency default to their standard categories. Names must be unique.',
    minItems: 1,
    maxItems: MAX_CATEGORIES,
  })
  @IsOptional()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_CATEGORIES)
  @ValidateNested({ each: true })
  @Type(() => AnalysisCategoryDto)
  categories?: AnalysisCategoryDto[];

  @ApiPropertyOptional({ example: 'Focus on the customer, not on the assistant.', maxLength: INSTRUCTIONS_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(INSTRUCTIONS_MAX)
  instructions?: string | null;

  @ApiPropertyOptional({ example: DEFAULT_ANALYSIS_MODEL, default: DEFAULT_ANALYSIS_MODEL })
  @IsOptional()
  @IsString()
  @Length(1, MODEL_MAX)
  @Matches(NO_WHITESPACE, { message: 'model must not contain whitespace' })
  model?: string;

  @ApiPropertyOptional({ example: true, default: false, description: 'Also return sentiment, urgency and topics' })
  @IsOptional()
  @IsBoolean()
  include_metadata?: boolean;
}

export class CreateAnalysisConfigDto extends AnalysisDefinitionDto {
  @ApiProperty({ example: 'Customer Support Intent Classifier', minLength: 1, maxLength: CONFIG_NAME_MAX })
  @IsString()
  @Length(1, CONFIG_NAME_MAX)
  @Matches(NOT_BLANK, { message: 'name must not be blank' })
  name: string;
}

/** An inline configuration of `POST /v1/analysis`: validated like a saved one, the name is optional and not stored. */
export class InlineAnalysisConfigDto extends AnalysisDefinitionDto {
  @ApiPropertyOptional({ example: 'Ad-hoc sentiment', maxLength: CONFIG_NAME_MAX })
  @IsOptional()
  @IsString()
  @Length(1, CONFIG_NAME_MAX)
  name?: string;
}

/** Every field optional; only `instructions` may be cleared with null. */
export class UpdateAnalysisConfigDto {
  @ApiPropertyOptional({ example: 'Customer Support Intent Classifier', minLength: 1, maxLength: CONFIG_NAME_MAX })
  @ValidateIf((o: UpdateAnalysisConfigDto) => o.name !== undefined)
  @IsString()
  @Length(1, CONFIG_NAME_MAX)
  @Matches(NOT_BLANK, { message: 'name must not be blank' })
  name?: string;

  @ApiPropertyOptional({ enum: ANALYSIS_TYPES, example: 'intent' })
  @ValidateIf((o: UpdateAnalysisConfigDto) => o.analysis_type !== undefined)
  @IsIn(ANALYSIS_TYPES, { message: `analysis_type must be one of ${ANALYSIS_TYPES.join(', ')}` })
  analysis_type?: AnalysisType;

  @ApiPropertyOptional({ type: [AnalysisCategoryDto], minItems: 1, maxItems: MAX_CATEGORIES })
  @ValidateIf((o: UpdateAnalysisConfigDto) => o.categories !== undefined)
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_CATEGORIES)
  @ValidateNested({ each: true })
  @Type(() => AnalysisCategoryDto)
  categories?: AnalysisCategoryDto[];

  @ApiPropertyOptional({ example: 'Focus on the customer, not on the assistant.', maxLength: INSTRUCTIONS_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(INSTRUCTIONS_MAX)
  instructions?: string | null;

  @ApiPropertyOptional({ example: DEFAULT_ANALYSIS_MODEL })
  @ValidateIf((o: UpdateAnalysisConfigDto) => o.model !== undefined)
  @IsString()
  @Length(1, MODEL_MAX)
  @Matches(NO_WHITESPACE, { message: 'model must not contain whitespace' })
  model?: string;

  @ApiPropertyOptional({ example: true })
  @ValidateIf((o: UpdateAnalysisConfigDto) => o.include_metadata !== undefined)
  @IsBoolean()
  include_metadata?: boolean;
}

export class RunAnalysisDto {
  @ApiPropertyOptional({ example: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N', description: 'The exchange to analyse (exactly one of request_id, response_id)' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  request_id?: string;

  @ApiPropertyOptional({ example: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b', description: 'The exchange, by its upstream response id' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  response_id?: string;

  @ApiPropertyOptional({ example: '550e8400-e29b-41d4-a716-446655440000', description: 'A saved configuration (exactly one of config_id, config)' })
  @IsOptional()
  @IsString()
  config_id?: string;

  @ApiPropertyOptional({ type: InlineAnalysisConfigDto, description: 'An inline configuration, validated like a saved one' })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => InlineAnalysisConfigDto)
  config?: InlineAnalysisConfigDto;

  @ApiPropertyOptional({ example: false, default: false, description: 'Skip the cache and store a new result' })
  @IsOptional()
  @IsBoolean()
  force_refresh?: boolean;
}

const noNul = (param: string) => Matches(NO_NUL, { message: `${param} must not contain NUL characters` });

/**
 * The filters of `GET /v1/analysis/results`. `@IsString()` comes last: the constraint applied first is reported, so a
 * parameter given twice (an array) is named as not a string.
 */
export class ListAnalysisResultsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ example: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N', description: 'only results of this exchange' })
  @OptionalParam()
  @MaxLength(256)
  @noNul('request_id')
  @IsString()
  request_id?: string;

  @ApiPropertyOptional({ example: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b', description: 'only results of the exchange with this upstream response id' })
  @OptionalParam()
  @MaxLength(256)
  @noNul('response_id')
  @IsString()
  response_id?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'only results of this saved configuration' })
  @OptionalParam()
  @Matches(UUID_RE, { message: 'config_id must be a UUID' })
  config_id?: string;
}

export interface AnalysisCategoryView {
  name: string;
  description: string | null;
}

export interface AnalysisConfigView {
  id: string;
  name: string;
  analysis_type: AnalysisType;
  categories: AnalysisCategoryView[];
  instructions: string | null;
  model: string;
  include_metadata: boolean;
  created_at: string;
  updated_at: string;
}

export interface CategoryScore {
  name: string;
  score: number;
  reasoning: string;
}

export interface AnalysisMetadata {
  sentiment: string;
  urgency: string;
  topics: string[];
}

export interface AnalysisResultView {
  id: string;
  request_id: string;
  response_id: string | null;
  config_id: string | null;
  analysis_type: AnalysisType;
  primary_category: string;
  confidence: number;
  reasoning: string;
  categories: CategoryScore[];
  metadata: AnalysisMetadata | null;
  model: string;
  usage: { input_tokens: number; output_tokens: number; total_tokens: number };
  cost: number | null;
  cached: boolean;
  created_at: string;
}

export const CONFIG_EXAMPLE: AnalysisConfigView = {
  id: '550e8400-e29b-41d4-a716-446655440000',
  name: 'Customer Support Intent Classifier',
  analysis_type: 'intent',
  categories: [
    { name: 'technical_support', description: 'Bugs, crashes, error messages' },
    { name: 'billing_inquiry', description: 'Invoices, charges, refunds' },
    { name: 'feature_request', description: null },
  ],
  instructions: 'Focus on what the customer wants.',
  model: 'gpt-4o-mini',
  include_metadata: true,
  created_at: '2026-06-05T18:30:00.000Z',
  updated_at: '2026-06-05T18:30:00.000Z',
};

export const RESULT_EXAMPLE: AnalysisResultView = {
  id: '7d1f0c9e-3b6a-4f52-9a55-0f3f3c1e2b10',
  request_id: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N',
  response_id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b',
  config_id: '550e8400-e29b-41d4-a716-446655440000',
  analysis_type: 'intent',
  primary_category: 'technical_support',
  confidence: 0.92,
  reasoning: 'The user is experiencing technical issues with the application',
  categories: [
    { name: 'technical_support', score: 0.92, reasoning: 'User mentions app crashes and error messages' },
    { name: 'billing_inquiry', score: 0.05, reasoning: 'No payment topic' },
    { name: 'feature_request', score: 0.03, reasoning: 'Nothing new is asked for' },
  ],
  metadata: { sentiment: 'frustrated', urgency: 'high', topics: ['error_handling', 'app_stability'] },
  model: 'gpt-4o-mini',
  usage: { input_tokens: 212, output_tokens: 27, total_tokens: 239 },
  cost: 0.000048,
  cached: false,
  created_at: '2026-06-05T18:31:02.000Z',
};
