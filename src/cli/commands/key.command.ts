import { Command, Option, SubCommand } from 'nest-commander';
import { readFileSync } from 'node:fs';
import { cliActor } from '../../audit/audit-actor';
import { KeysService, KeyView } from '../../keys/keys.service';
import { AdminCommand, JsonOption, masked, record, table } from '../admin-command';
import { CommandGroup } from '../command-group';

interface KeyCreateOptions extends JsonOption {
  userId?: string;
  label?: string;
  baseUrl?: string;
}

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

  async run([orgId, apiKey]: string[], options: KeyCreateOptions): Promise<void> {
    // '-' keeps the key out of the shell history and the process list
    const secret = apiKey === '-' ? readFileSync(0, 'utf8').trim() : apiKey;
    const key = await this.keys.create({ orgId, apiKey: secret, userId: options.userId, label: options.label, baseUrl: options.baseUrl }, cliActor());
    this.print(options, key, () =>
      record(`Stored ${key.scope} key ${masked(key.last4)}`, [
        ['id', key.id],
        ['scope', owner(key)],
        ['label', key.label],
        ['base url', key.base_url ?? '(OPENAI_BASE_URL)'],
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
            ['ID', 'KEY', 'SCOPE', 'LABEL', 'BASE URL', 'STATUS', 'CREATED'],
            data.map((k) => [k.id, masked(k.last4), owner(k), k.label, k.base_url, k.revoked ? 'revoked' : 'active', k.created_at]),
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
  subCommands: [KeyCreateCommand, KeyListCommand, KeyRevokeCommand, KeyRotateMasterCommand],
})
export class KeyCommand extends CommandGroup {}
