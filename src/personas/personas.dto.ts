import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches, MaxLength, ValidateIf } from 'class-validator';

export const PERSONA_NAME_MAX = 100;
export const PERSONA_CONTENT_MAX = 100_000;
export const PERSONA_DESCRIPTION_MAX = 2000;

const NOT_BLANK = /\S/;

export class CreatePersonaDto {
  @ApiProperty({ example: 'Support agent', minLength: 1, maxLength: PERSONA_NAME_MAX })
  @IsString()
  @Length(1, PERSONA_NAME_MAX)
  @Matches(NOT_BLANK, { message: 'name must not be blank' })
  name: string;

  @ApiProperty({ example: 'You are a friendly support agent for ACME.', minLength: 1, maxLength: PERSONA_CONTENT_MAX })
  @IsString()
  @Length(1, PERSONA_CONTENT_MAX)
  @Matches(NOT_BLANK, { message: 'content must not be blank' })
  content: string;

  @ApiPropertyOptional({ type: String, example: 'First-line support', maxLength: PERSONA_DESCRIPTION_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(PERSONA_DESCRIPTION_MAX)
  description?: string | null;
}

/** Every field optional; `name` and `content` may be changed but never cleared (null is a 400), `description` may be null. */
export class UpdatePersonaDto {
  @ApiPropertyOptional({ example: 'Support agent', minLength: 1, maxLength: PERSONA_NAME_MAX })
  @ValidateIf((o: UpdatePersonaDto) => o.name !== undefined)
  @IsString()
  @Length(1, PERSONA_NAME_MAX)
  @Matches(NOT_BLANK, { message: 'name must not be blank' })
  name?: string;

  @ApiPropertyOptional({ example: 'You are a friendly support agent for ACME.', minLength: 1, maxLength: PERSONA_CONTENT_MAX })
  @ValidateIf((o: UpdatePersonaDto) => o.content !== undefined)
  @IsString()
  @Length(1, PERSONA_CONTENT_MAX)
  @Matches(NOT_BLANK, { message: 'content must not be blank' })
  content?: string;

  @ApiPropertyOptional({ type: String, example: 'First-line support', maxLength: PERSONA_DESCRIPTION_MAX, nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(PERSONA_DESCRIPTION_MAX)
  description?: string | null;
}

export interface PersonaView {
  id: string;
  name: string;
  content: string;
  description: string | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface PersonaVersionView {
  /** the version's own id, the `after` cursor of the versions list */
  id: string;
  version: number;
  content: string;
  created_at: string;
}

/** What the proxy needs to apply a persona to a request. */
export interface ResolvedPersona {
  id: string;
  version: number;
  content: string;
}
