import { Command, Option, SubCommand } from 'nest-commander';
import { cliActor } from '../../audit/audit-actor';
import { IssuedTokensService, IssuedTokenView } from '../../auth/issued-tokens.service';
import { DEFAULT_SCOPES, SCOPES } from '../../auth/scopes';
import { TokensService } from '../../auth/tokens.service';
import { AdminCommand, JsonOption, table } from '../admin-command';
import { CommandGroup } from '../command-group';

interface JwtCreateOptions extends JsonOption {
  orgId: string;
  orgName?: string;
  userId?: string;
  expiresIn?: string;
  scope?: string;
}

@SubCommand({ name: 'create', description: 'issue a token for an organization (prints the token alone)' })
export class JwtCreateCommand extends AdminCommand<JwtCreateOptions> {
  constructor(private readonly tokens: TokensService) {
    super();
  }

  @Option({ flags: '--org-id <id>', description: 'the organization the token acts for', required: true })
  parseOrgId(value: string): string {
    return value;
  }

  @Option({ flags: '--org-name <name>', description: "org_name claim (default: the organization's name)" })
  parseOrgName(value: string): string {
    return value;
  }

  @Option({ flags: '--user-id <external-id>', description: 'pin the token to this X-User-ID' })
  parseUserId(value: string): string {
    return value;
  }

  @Option({ flags: '--expires-in <duration>', description: 'lifetime: seconds, or 90m, 12h, 30d, 2w (default 30d)' })
  parseExpiresIn(value: string): string {
    return value;
  }

  @Option({
    flags: '--scope <words>',
    description:
      `what the token may do, space-separated: ${SCOPES.join(', ')} (proxy: model calls and the OpenAI API; read: stored exchanges, ` +
      `analytics, personas; manage: write personas and analysis configs, run analyses; admin: end users' data, audit log). ` +
      `Default: "${DEFAULT_SCOPES.join(' ')}"`,
  })
  parseScope(value: string): string {
    return value;
  }

  async run(_params: string[], options: JwtCreateOptions): Promise<void> {
    const issued = await this.tokens.create(
      { orgId: options.orgId, orgName: options.orgName, userId: options.userId, expiresIn: options.expiresIn, scope: options.scope },
      cliActor(),
    );
    // the bare token alone, so that TOKEN=$(openai-proxy jwt create …) works
    this.print(options, issued, () => issued.token);
  }
}

@SubCommand({ name: 'revoke', arguments: '<jti>', description: 'revoke a token by its jti: running servers refuse it' })
export class JwtRevokeCommand extends AdminCommand {
  constructor(private readonly tokens: TokensService) {
    super();
  }

  async run([jti]: string[], options: JsonOption): Promise<void> {
    const result = await this.tokens.revoke(jti, cliActor());
    this.print(options, result, () => `Revoked token ${result.jti}; running servers refuse it within seconds.`);
  }
}

const tokenStatus = (t: IssuedTokenView) => (t.revoked ? 'revoked' : t.expired ? 'expired' : 'active');

@SubCommand({ name: 'list', arguments: '<org-id>', description: 'list the tokens issued for an organization, with their scopes (never the tokens themselves)' })
export class JwtListCommand extends AdminCommand {
  constructor(private readonly issued: IssuedTokensService) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const data = await this.issued.list(orgId);
    this.print(options, { data }, () =>
      data.length
        ? table(
            ['JTI', 'USER', 'ISSUED', 'EXPIRES', 'STATUS', 'SCOPE'],
            data.map((t) => [t.jti, t.user_id ?? '(any)', t.issued_at, t.expires_at, tokenStatus(t), t.scope ?? `${DEFAULT_SCOPES.join(' ')} (default)`]),
          )
        : 'No tokens issued for this organization.',
    );
  }
}

@Command({ name: 'jwt', description: 'issue, list and revoke tokens', subCommands: [JwtCreateCommand, JwtListCommand, JwtRevokeCommand] })
export class JwtCommand extends CommandGroup {}
