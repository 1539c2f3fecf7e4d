import { Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiBody, ApiHeader, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import type { ProxyRequest } from '../common/request-context';
import { ForwardsBody } from '../common/request-body.interceptor';
import { ProxyService } from './proxy.service';
import { ApiModelAnswer, ChatCompletionObject, OpenAIResponseObject } from './proxy.responses';

const SESSION_HEADER = {
  name: 'X-Session-ID',
  required: false,
  description: 'Groups exchanges into a session (1–128 of [A-Za-z0-9._:-]). Without it, previous_response_id joins that response’s session, else a new session_… is minted.',
};

const CAPTURE_HEADER = {
  name: 'X-Capture-Mode',
  required: false,
  description:
    'Lowers what is stored of this call below the organization’s capture mode (full > redacted > metadata); never forwarded upstream. ' +
    'Asking for more than the organization’s mode is a 400 capture_mode_not_allowed, an unknown value a 400 invalid_capture_mode.',
};

const errors = (status: number, type: string, code: string | null, message: string) => ApiResponse(apiError(status, message, type, code, message));
const PERSONA_EXAMPLE_NOTE = 'persona_id must be the id of one of your personas (POST /v1/personas answers it); an unknown id is a 404.';

const ProxyErrors = () => (target: object, key: string | symbol, desc: PropertyDescriptor) => {
  for (const d of [
    errors(400, 'invalid_request_error', null, 'persona_id must be a UUID'),
    errors(403, 'permission_error', 'no_api_key', 'No upstream API key is configured for this user or organization'),
    errors(404, 'not_found_error', 'not_found', "No persona found with id '…'"),
    errors(429, 'rate_limit_error', 'rate_limit_exceeded', 'Rate limit reached (upstream 429 after retries)'),
    errors(502, 'upstream_error', 'upstream_error', 'The upstream could not be reached or closed the connection'),
    errors(504, 'upstream_timeout', 'upstream_timeout', 'The upstream did not answer in time'),
  ]) {
    d(target, key, desc);
  }
};

@ApiTags('proxy')
@ApiProtected()
@ApiHeader(SESSION_HEADER)
@ApiHeader(CAPTURE_HEADER)
@ForwardsBody()
@RequireScope('proxy')
@Controller('v1')
export class ProxyController {
  constructor(private readonly proxy: ProxyService) {}

  @Post('responses')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create a model response (OpenAI Responses API), forwarded upstream',
    description:
      'The body is an OpenAI Responses create request, forwarded unchanged (unknown fields included) except `persona_id`, ' +
      'whose persona content becomes `instructions` (before the client’s own). With `"stream": true` the answer is relayed as ' +
      'server-sent events. Response headers: X-Request-ID (the stored exchange), X-Session-ID, X-Key-Source.',
  })
  @ApiBody({
    schema: {
      type: 'object',
      additionalProperties: true,
      properties: {
        model: { type: 'string' },
        input: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', additionalProperties: true } }], description: 'text, or a list of input items' },
        instructions: { type: 'string' },
        stream: { type: 'boolean' },
        previous_response_id: { type: 'string' },
        persona_id: { type: 'string', format: 'uuid', description: 'extension: the persona whose content becomes the instructions' },
      },
    },
    examples: {
      hello: { summary: 'a plain request', value: { model: 'gpt-4o-mini', input: 'Say hello' } },
      stream: { summary: 'streamed as server-sent events', value: { model: 'gpt-4o-mini', input: 'Say hello', stream: true } },
      persona: { summary: 'with a persona', description: PERSONA_EXAMPLE_NOTE, value: { model: 'gpt-4o-mini', input: 'Say hello', persona_id: '3f1c2a9e-4d7b-4c1e-9a51-2b7f0c3d9e10' } },
    },
  })
  @ApiModelAnswer(
    'The upstream response object (or an SSE stream of Responses events)',
    OpenAIResponseObject,
    {
      id: 'resp_67ccd2bed1ec8190b14f964abc054267',
      object: 'response',
      status: 'completed',
      model: 'gpt-4o-mini-2024-07-18',
      output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello!', annotations: [] }] }],
      usage: { input_tokens: 9, output_tokens: 2, total_tokens: 11 },
    },
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_67ccd3a9","output_index":0,"content_index":0,"delta":"Hello"}\n\n' +
      'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_67ccd2bed1ec8190b14f964abc054267","object":"response","status":"completed"}}\n\n',
  )
  @ProxyErrors()
  async responses(@Req() req: ProxyRequest, @Res() res: Response): Promise<void> {
    await this.proxy.forward('responses', req, res);
  }

  @Post('chat/completions')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create a chat completion (OpenAI Chat Completions API), forwarded upstream',
    description:
      'Forwarded unchanged except `persona_id`, whose persona content becomes a leading system message. Streams end with `data: [DONE]`.',
  })
  @ApiBody({
    schema: {
      type: 'object',
      additionalProperties: true,
      properties: {
        model: { type: 'string' },
        messages: { type: 'array', items: { type: 'object', additionalProperties: true } },
        stream: { type: 'boolean' },
        persona_id: { type: 'string', format: 'uuid', description: 'extension: the persona whose content becomes a leading system message' },
      },
    },
    examples: {
      hello: { summary: 'a plain request', value: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] } },
      stream: { summary: 'streamed as server-sent events', value: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], stream: true, stream_options: { include_usage: true } } },
      persona: { summary: 'with a persona', description: PERSONA_EXAMPLE_NOTE, value: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], persona_id: '3f1c2a9e-4d7b-4c1e-9a51-2b7f0c3d9e10' } },
    },
  })
  @ApiModelAnswer(
    'The upstream chat completion (or an SSE stream of chunks)',
    ChatCompletionObject,
    {
      id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
      object: 'chat.completion',
      model: 'gpt-4o-mini-2024-07-18',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
    },
    'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello!"},"finish_reason":null}]}\n\n' +
      'data: [DONE]\n\n',
  )
  @ProxyErrors()
  async chatCompletions(@Req() req: ProxyRequest, @Res() res: Response): Promise<void> {
    await this.proxy.forward('chat.completions', req, res);
  }
}
