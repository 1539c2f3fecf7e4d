import { Command, Option, SubCommand } from 'nest-commander';
import { readFileSync } from 'node:fs';
import { cliActor } from '../../audit/audit-actor';
import { AppException } from '../../common/app-exception';
import { KeysService, KeyView } from '../../keys/keys.service';
import { AdminCommand, JsonOption, masked, record, table } from '../admin-command';
import { CommandGroup } from '../command-group';

interface KeyCreateOptions extends JsonOption {
  userId?: string;
  label?: string;
  baseUrl?: string;
  models?: string;
  weight?: number;
  priority?: number;
  verify?: boolean;
}

/** An integer option as given (the service checks its range). */
function integer(flag: string, value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw AppException.invalid(`${flag} takes an integer, got '${value}'`, flag.replace(/^--/, ''));
  return Number(value);
}

const pool = (k: KeyView) => `${k.models ? k.models.join(',') : '(every model)'}; weight ${k.weight}, priority ${k.priority}`;

const owner = (k: KeyView) => (k.user_id ? `user ${k.user_id}` : 'organization');

@SubCommand({
  name: 'create',
  arguments: '<org-id> <api-key>',
  description: "store an upstream API key for an organization, or for one of its users with --user-id (api-key '-' reads it from stdin)",
})
export class KeyCreateCommand extends AdminCommand<KeyCreateOptions> {
  constructor(private readonly keys: KeysService) {
    super();
  }

  @Option({ flags: '--user-id <user-id>', description: "the user's internal id (as `user create` printed it) or external id (X-User-ID)" })
  parseUserId(value: string): string {
    return value;
  }

  @Option({ flags: '--label <label>', description: 'a note to recognise the key by' })
  parseLabel(value: string): string {
    return value;
  }

  @Option({ flags: '--base-url <url>', description: 'an OpenAI-compatible upstream for this key (default OPENAI_BASE_URL)' })
  parseBaseUrl(value: string): string {
    return value;
  }

  @Option({ flags: '--models <patterns>', description: 'the models the key serves, comma-separated glob patterns ("gpt-*,o3*"); default every model' })
  parseModels(value: string): string {
    return value;
  }

  @Option({ flags: '--weight <n>', description: "the key's share of calls among keys of equal priority (default 1)" })
  parseWeight(value: string): number {
    return integer('--weight', value);
  }

  @Option({ flags: '--priority <n>', description: 'keys of higher priority are tried first (default 0)' })
  parsePriority(value: string): number {
    return integer('--priority', value);
  }

  @Option({ flags: '--verify', description: 'check the key upstream (GET /models) first; a key that fails is not stored' })
  parseVerify(): boolean {
    return true;
  }

  async run([orgId, apiKey]: string[], options: KeyCreateOptions): Promise<void> {
    // '-' keeps the key out of the shell history and the process list
    const secret = apiKey === '-' ? readFileSync(0, 'utf8').trim() : apiKey;
    const { userId, label, baseUrl, models, weight, priority, verify } = options;
    const key = await this.keys.create({ orgId, apiKey: secret, userId, label, baseUrl, models, weight, priority, verify }, cliActor());
    this.print(options, key, () =>
      record(`Stored ${key.scope} key ${masked(key.last4)}`, [
        ['id', key.id],
        ['scope', owner(key)],
        ['label', key.label],
        ['base url', key.base_url ?? '(OPENAI_BASE_URL)'],
        ['pool', pool(key)],
      ]),
    );
  }
}

@SubCommand({ name: 'list', arguments: '<org-id>', description: "list an organization's keys (masked)" })
export class KeyListCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const data = await this.keys.list(orgId);
    this.print(options, { data }, () =>
      data.length
        ? table(
            ['ID', 'KEY', 'SCOPE', 'LABEL', 'BASE URL', 'MODELS', 'WEIGHT', 'PRIORITY', 'STATE', 'CREATED'],
            data.map((k) => [
              k.id,
              masked(k.last4),
              owner(k),
              k.label,
              k.base_url,
              k.models?.join(',') ?? '*',
              String(k.weight),
              String(k.priority),
              k.rest_until && k.state === 'active' ? `resting until ${k.rest_until}` : k.state,
              k.created_at,
            ]),
          )
        : 'No keys in this organization.',
    );
  }
}

@SubCommand({ name: 'revoke', arguments: '<key-id>', description: 'revoke a key: running servers stop using it' })
export class KeyRevokeCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run([keyId]: string[], options: JsonOption): Promise<void> {
    const key = await this.keys.revoke(keyId, cliActor());
    this.print(options, key, () => `Revoked key ${masked(key.last4)} (${key.id}); running servers stop using it within seconds.`);
  }
}

@SubCommand({ name: 'show', arguments: '<key-id>', description: 'a key: its state, last error, rest, and calls, tokens and cost today and this month' })
export class KeyShowCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run([keyId]: string[], options: JsonOption): Promise<void> {
    const key = await this.keys.show(keyId);
    const usage = (u: { calls: number; tokens: number; cost: number }) => `${u.calls} calls, ${u.tokens} tokens, $${u.cost.toFixed(6)}`;
    this.print(options, key, () =>
      record(`Key ${masked(key.last4)} (${key.id})`, [
        ['organization', key.organization_id],
        ['scope', owner(key)],
        ['label', key.label],
        ['base url', key.base_url ?? '(OPENAI_BASE_URL)'],
        ['pool', pool(key)],
        ['state', key.state],
        ['resting until', key.rest_until],
        ['last error', key.last_error],
        ['invalid since', key.invalid_at],
        ['today', usage(key.usage.today)],
        ['this month', usage(key.usage.month)],
      ]),
    );
  }
}

@SubCommand({ name: 'enable', arguments: '<key-id>', description: 'put a key the upstream refused (invalid) back into its pool' })
export class KeyEnableCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run([keyId]: string[], options: JsonOption): Promise<void> {
    const key = await this.keys.enable(keyId, cliActor());
    this.print(options, key, () => `Enabled key ${masked(key.last4)} (${key.id}); running servers use it again within seconds.`);
  }
}

@SubCommand({
  name: 'fallback',
  arguments: '<org-id> <on|off>',
  description: "on: a user's calls go on to the organization's keys when their own keys cannot serve them (default off)",
})
export class OrgFallbackCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run([orgId, value]: string[], options: JsonOption): Promise<void> {
    if (value !== 'on' && value !== 'off') throw AppException.invalid("fallback takes 'on' or 'off'", 'value');
    const result = await this.keys.setFallback(orgId, value === 'on', cliActor());
    this.print(options, result, () => `Key fallback of organization ${orgId}: ${value}.`);
  }
}

@SubCommand({
  name: 'rotate-master',
  description: 're-encrypt every stored key under ENCRYPTION_KEY, reading with ENCRYPTION_KEY_PREVIOUS',
})
export class KeyRotateMasterCommand extends AdminCommand {
  constructor(private readonly keys: KeysService) {
    super();
  }

  async run(_params: string[], options: JsonOption): Promise<void> {
    const result = await this.keys.rotateMaster(cliActor());
    this.print(
      options,
      result,
      () => `Re-encrypted ${result.rotated} of ${result.total} stored keys under ENCRYPTION_KEY (${result.total - result.rotated} already current).`,
    );
  }
}

@Command({
  name: 'key',
  description: 'manage upstream API keys',
  subCommands: [KeyCreateCommand, KeyListCommand, KeyShowCommand, KeyEnableCommand, KeyRevokeCommand, KeyRotateMasterCommand],
})
export class KeyCommand extends CommandGroup {}
