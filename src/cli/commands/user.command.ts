import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { Command, Option, SubCommand } from 'nest-commander';
import { cliActor } from '../../audit/audit-actor';
import { UsersService } from '../../auth/users.service';
import { EndUsersService } from '../../end-users/end-users.service';
import { writeLines } from '../../end-users/export-lines';
import { AdminCommand, JsonOption, record, table } from '../admin-command';
import { CommandGroup } from '../command-group';
import { UserLimitsCommand } from './limits.command';

interface UserCreateOptions extends JsonOption {
  name?: string;
}

@SubCommand({
  name: 'create',
  arguments: '<org-id> <external-id>',
  description: "create a user of an organization (external-id is the X-User-ID value)",
})
export class UserCreateCommand extends AdminCommand<UserCreateOptions> {
  constructor(private readonly users: UsersService) {
    super();
  }

  @Option({ flags: '--name <name>', description: 'display name' })
  parseName(value: string): string {
    return value;
  }

  async run([orgId, externalId]: string[], options: UserCreateOptions): Promise<void> {
    const user = await this.users.create(orgId, externalId, options.name, cliActor());
    this.print(options, user, () =>
      record(`Created user '${user.external_id}'`, [
        ['id', user.id],
        ['organization', user.organization_id],
        ['name', user.name],
      ]),
    );
  }
}

@SubCommand({ name: 'list', arguments: '<org-id>', description: "list an organization's users" })
export class UserListCommand extends AdminCommand {
  constructor(private readonly users: UsersService) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const data = await this.users.list(orgId);
    this.print(options, { data }, () =>
      data.length
        ? table(['ID', 'EXTERNAL ID', 'NAME', 'CREATED'], data.map((u) => [u.id, u.external_id, u.name, u.created_at]))
        : 'No users in this organization.',
    );
  }
}

@SubCommand({
  name: 'delete',
  arguments: '<org-id> <user-id>',
  description: "delete a user (internal id or external id) with their own upstream keys and limits; their exchanges and ratings stay",
})
export class UserDeleteCommand extends AdminCommand {
  constructor(private readonly users: UsersService) {
    super();
  }

  async run([orgId, userRef]: string[], options: JsonOption): Promise<void> {
    const user = await this.users.delete(orgId, userRef, cliActor());
    const keys = user.deleted_keys === 1 ? '1 upstream key' : `${user.deleted_keys} upstream keys`;
    this.print(options, user, () => `Deleted user '${user.external_id}' (${user.id}) with ${keys} and its limits; its exchanges and ratings stay.`);
  }
}

interface UserExportOptions extends JsonOption {
  out?: string;
}

@SubCommand({
  name: 'export',
  arguments: '<org-id> <user-id>',
  description: "everything stored of an end user (user-id is the X-User-ID value), as JSON lines: exchanges, ratings, analyses, keys, tokens",
})
export class UserExportCommand extends AdminCommand<UserExportOptions> {
  constructor(private readonly endUsers: EndUsersService) {
    super();
  }

  @Option({ flags: '--out <file>', description: 'write the lines to this file (created or replaced) instead of stdout' })
  parseOut(value: string): string {
    return value;
  }

  async run([orgId, externalId]: string[], options: UserExportOptions): Promise<void> {
    const lines = await this.endUsers.export(orgId, externalId);
    if (!options.out) {
      // a reader that stops early (`| head`) ends the export, as it would any other command's output
      return writeLines(process.stdout, lines).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EPIPE') throw err;
      });
    }
    const file = createWriteStream(options.out, { mode: 0o600 });
    await once(file, 'open');
    await writeLines(file, lines);
    file.end();
    await once(file, 'close');
  }
}

@SubCommand({
  name: 'erase',
  arguments: '<org-id> <user-id>',
  description: 'erase an end user (user-id is the X-User-ID value): exchanges, ratings, analyses, keys, limits and counters; prints a receipt',
})
export class UserEraseCommand extends AdminCommand {
  constructor(private readonly endUsers: EndUsersService) {
    super();
  }

  async run([orgId, externalId]: string[], options: JsonOption): Promise<void> {
    const receipt = await this.endUsers.erase(orgId, externalId, cliActor());
    const counts = Object.entries(receipt.erased).map(([name, n]): [string, string] => [name.replace(/_/g, ' '), String(n)]);
    const nothing = Object.values(receipt.erased).every((n) => n === 0);
    this.print(options, receipt, () =>
      record(nothing ? `Nothing stored of user '${receipt.user_id}': nothing to erase` : `Erased user '${receipt.user_id}'`, [...counts, ['erased at', receipt.erased_at]]),
    );
  }
}

@Command({
  name: 'user',
  description: 'manage the users of an organization',
  subCommands: [UserCreateCommand, UserListCommand, UserDeleteCommand, UserExportCommand, UserEraseCommand, UserLimitsCommand],
})
export class UserCommand extends CommandGroup {}
