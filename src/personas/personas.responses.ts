import { ApiProperty } from '@nestjs/swagger';
import { ApiObject, ListOf } from '../common/api-docs';
import type { PersonaVersionView, PersonaView } from './personas.dto';

@ApiObject('Persona')
export class PersonaResponse implements PersonaView {
  @ApiProperty({ format: 'uuid', example: '6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b' })
  id!: string;

  @ApiProperty({ example: 'Support agent' })
  name!: string;

  @ApiProperty({ example: 'You are a friendly support agent for ACME.' })
  content!: string;

  @ApiProperty({ type: String, nullable: true, example: 'First-line support' })
  description!: string | null;

  @ApiProperty({ type: 'integer', example: 2, description: 'the current version; a change of content makes a new one' })
  version!: number;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  created_at!: string;

  @ApiProperty({ format: 'date-time', example: '2026-06-06T09:12:00.000Z' })
  updated_at!: string;
}

@ApiObject('PersonaVersion')
export class PersonaVersionResponse implements PersonaVersionView {
  @ApiProperty({ format: 'uuid', description: "the version's own id, the `after` cursor of the versions list" })
  id!: string;

  @ApiProperty({ type: 'integer', example: 1 })
  version!: number;

  @ApiProperty({ example: 'You are a support agent.' })
  content!: string;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  created_at!: string;
}

export const PersonaList = ListOf(PersonaResponse, 'PersonaList');
export const PersonaVersionList = ListOf(PersonaVersionResponse, 'PersonaVersionList');
