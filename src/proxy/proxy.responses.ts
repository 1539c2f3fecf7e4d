import { applyDecorators, type Type } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiProperty, ApiPropertyOptional, getSchemaPath } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';

// The proxy relays OpenAI's objects unchanged, so these describe their main fields and leave the rest open:
// a field OpenAI adds tomorrow must reach a generated client, not be refused by it.

const openObject = (description?: string) => ({ type: 'object' as const, additionalProperties: true, description });

@ApiObject('ResponseUsage', { open: true })
class ResponseUsage {
  @ApiProperty({ type: 'integer', example: 9 })
  input_tokens!: number;

  @ApiProperty({ type: 'integer', example: 2 })
  output_tokens!: number;

  @ApiProperty({ type: 'integer', example: 11 })
  total_tokens!: number;
}

@ApiObject('OpenAIResponse', { open: true, description: "An OpenAI Responses API response object, as upstream sent it" })
export class OpenAIResponseObject {
  @ApiProperty({ example: 'resp_67ccd2bed1ec8190b14f964abc054267' })
  id!: string;

  @ApiProperty({ enum: ['response'], example: 'response' })
  object!: 'response';

  @ApiProperty({ type: 'integer', example: 1741476542, description: 'Unix seconds' })
  created_at!: number;

  @ApiProperty({ example: 'completed', description: 'completed, failed, in_progress, cancelled, queued or incomplete' })
  status!: string;

  @ApiProperty({ example: 'gpt-4o-mini-2024-07-18' })
  model!: string;

  @ApiProperty({
    type: 'array',
    items: openObject(),
    description: 'output items (messages, reasoning, tool calls …)',
    example: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello!', annotations: [] }] }],
  })
  output!: Record<string, unknown>[];

  @ApiPropertyOptional({ type: ResponseUsage, nullable: true })
  usage?: ResponseUsage | null;

  @ApiPropertyOptional({ ...openObject('set when status is failed'), nullable: true })
  error?: Record<string, unknown> | null;
}

@ApiObject('ChatCompletionMessage', { open: true })
class ChatCompletionMessage {
  @ApiProperty({ example: 'assistant' })
  role!: string;

  @ApiProperty({ type: String, nullable: true, example: 'Hello!' })
  content!: string | null;

  @ApiPropertyOptional({ type: String, nullable: true })
  refusal?: string | null;

  @ApiPropertyOptional({ type: 'array', items: openObject() })
  tool_calls?: Record<string, unknown>[];
}

@ApiObject('ChatCompletionChoice', { open: true })
class ChatCompletionChoice {
  @ApiProperty({ type: 'integer', example: 0 })
  index!: number;

  @ApiProperty({ type: ChatCompletionMessage })
  message!: ChatCompletionMessage;

  @ApiProperty({ type: String, nullable: true, example: 'stop' })
  finish_reason!: string | null;
}

@ApiObject('ChatCompletionUsage', { open: true })
class ChatCompletionUsage {
  @ApiProperty({ type: 'integer', example: 9 })
  prompt_tokens!: number;

  @ApiProperty({ type: 'integer', example: 2 })
  completion_tokens!: number;

  @ApiProperty({ type: 'integer', example: 11 })
  total_tokens!: number;
}

@ApiObject('ChatCompletion', { open: true, description: 'An OpenAI chat completion object, as upstream sent it' })
export class ChatCompletionObject {
  @ApiProperty({ example: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT' })
  id!: string;

  @ApiProperty({ enum: ['chat.completion'], example: 'chat.completion' })
  object!: 'chat.completion';

  @ApiProperty({ type: 'integer', example: 1741569952, description: 'Unix seconds' })
  created!: number;

  @ApiProperty({ example: 'gpt-4o-mini-2024-07-18' })
  model!: string;

  @ApiProperty({ type: [ChatCompletionChoice] })
  choices!: ChatCompletionChoice[];

  @ApiPropertyOptional({ type: ChatCompletionUsage })
  usage?: ChatCompletionUsage;
}

@ApiObject('Model', { open: true })
class ModelObject {
  @ApiProperty({ example: 'gpt-4o-mini' })
  id!: string;

  @ApiProperty({ enum: ['model'], example: 'model' })
  object!: 'model';

  @ApiProperty({ type: 'integer', example: 1721172741, description: 'Unix seconds' })
  created!: number;

  @ApiProperty({ example: 'system' })
  owned_by!: string;
}

@ApiObject('ModelList', { open: true, description: "OpenAI's model list, as upstream sent it" })
export class ModelListObject {
  @ApiProperty({ enum: ['list'], example: 'list' })
  object!: 'list';

  @ApiProperty({ type: [ModelObject] })
  data!: ModelObject[];
}

/** A model call's 200: the OpenAI object as JSON, or with `"stream": true` the upstream's server-sent events. */
export function ApiModelAnswer(description: string, type: Type<unknown>, example: object, events: string): MethodDecorator {
  return applyDecorators(
    ApiExtraModels(type),
    ApiOkResponse({
      description,
      content: {
        'application/json': { schema: { $ref: getSchemaPath(type) }, example },
        'text/event-stream': { schema: { type: 'string', description: 'the upstream events, relayed unchanged and in order' }, example: events },
      },
    }),
  );
}
