import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { tokenActor } from '../audit/audit-actor';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { ListPage, PageQueryDto, pageOf } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { CreatePersonaDto, PersonaVersionView, PersonaView, UpdatePersonaDto } from './personas.dto';
import { PersonasService } from './personas.service';
import { PersonaList, PersonaResponse, PersonaVersionList } from './personas.responses';

const PERSONA_EXAMPLE: PersonaView = {
  id: '6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b',
  name: 'Support agent',
  content: 'You are a friendly support agent for ACME.',
  description: 'First-line support',
  version: 2,
  created_at: '2026-06-05T18:30:00.000Z',
  updated_at: '2026-06-06T09:12:00.000Z',
};

const VERSION_IDS = ['0d9b1f4e-6a2c-4c1e-8f3a-5b7d9e1f2a3c', '7e2a4c6b-1d3f-4b5a-9c8e-2f4a6b8c0d1e'];

const notFound = apiError(404, 'Unknown persona, deleted, or of another organization', 'not_found_error', 'not_found', "No persona found with id '…'");
const conflict = apiError(409, 'Another live persona of the organization has this name', 'conflict_error', 'conflict', "A persona named 'Support agent' already exists in this organization", 'name');
const invalid = apiError(400, 'Validation error; `param` names the field', 'invalid_request_error', null, 'name must not be blank', 'name');

@ApiTags('personas')
@ApiProtected()
@Controller('v1/personas')
export class PersonasController {
  constructor(private readonly personas: PersonasService) {}

  @RequireScope('manage')
  @Post()
  @ApiOperation({ summary: 'Create a persona (version 1)' })
  @ApiBody({ type: CreatePersonaDto, examples: { persona: { value: { name: 'Support agent', content: 'You are a friendly support agent for ACME.', description: 'First-line support' } } } })
  @ApiCreatedResponse({ type: PersonaResponse, example: { ...PERSONA_EXAMPLE, version: 1 } })
  @ApiResponse(invalid)
  @ApiResponse(conflict)
  create(@Acting() acting: ActingContext, @Body() body: CreatePersonaDto): Promise<PersonaView> {
    return this.personas.create(acting.orgId, body, tokenActor(acting));
  }

  @RequireScope('read')
  @Get()
  @ApiOperation({ summary: "List the organization's personas, oldest first" })
  @ApiOkResponse({ type: PersonaList, example: { object: 'list', data: [PERSONA_EXAMPLE], has_more: false, first_id: PERSONA_EXAMPLE.id, last_id: PERSONA_EXAMPLE.id } })
  list(@Acting() acting: ActingContext, @Query() query: PageQueryDto): Promise<ListPage<PersonaView>> {
    return this.personas.list(acting.orgId, pageOf(query));
  }

  @RequireScope('read')
  @Get(':id')
  @ApiOperation({ summary: 'Get a persona' })
  @ApiOkResponse({ type: PersonaResponse, example: PERSONA_EXAMPLE })
  @ApiResponse(notFound)
  get(@Acting() acting: ActingContext, @Param('id') id: string): Promise<PersonaView> {
    return this.personas.get(acting.orgId, id);
  }

  @RequireScope('manage')
  @Patch(':id')
  @ApiOperation({ summary: 'Change a persona; a change of content makes a new version' })
  @ApiBody({ type: UpdatePersonaDto, examples: { content: { summary: 'new content: a new version', value: { content: 'You are a friendly and concise support agent for ACME.' } } } })
  @ApiOkResponse({ type: PersonaResponse, example: PERSONA_EXAMPLE })
  @ApiResponse(invalid)
  @ApiResponse(notFound)
  @ApiResponse(conflict)
  update(@Acting() acting: ActingContext, @Param('id') id: string, @Body() body: UpdatePersonaDto): Promise<PersonaView> {
    return this.personas.update(acting.orgId, id, body, tokenActor(acting));
  }

  @RequireScope('manage')
  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a persona (its history stays for analytics; its name can be reused)' })
  @ApiNoContentResponse()
  @ApiResponse(notFound)
  remove(@Acting() acting: ActingContext, @Param('id') id: string): Promise<void> {
    return this.personas.remove(acting.orgId, id, tokenActor(acting));
  }

  @RequireScope('read')
  @Get(':id/versions')
  @ApiOperation({ summary: 'The versions of a persona with their content, oldest first, paged like every list (`after` is a version id)' })
  @ApiOkResponse({
    type: PersonaVersionList,
    example: {
      object: 'list',
      data: [
        { id: VERSION_IDS[0], version: 1, content: 'You are a support agent.', created_at: '2026-06-05T18:30:00.000Z' },
        { id: VERSION_IDS[1], version: 2, content: 'You are a friendly support agent for ACME.', created_at: '2026-06-06T09:12:00.000Z' },
      ],
      has_more: false,
      first_id: VERSION_IDS[0],
      last_id: VERSION_IDS[1],
    },
  })
  @ApiResponse(notFound)
  versions(@Acting() acting: ActingContext, @Param('id') id: string, @Query() query: PageQueryDto): Promise<ListPage<PersonaVersionView>> {
    return this.personas.listVersions(acting.orgId, id, pageOf(query));
  }
}
