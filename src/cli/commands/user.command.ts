import { Command, Option, SubCommand } from 'nest-commander';
import { UsersService } from '../../auth/users.service';
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
    const user = await this.users.create(orgId, externalId, options.name);
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

@Command({ name: 'user', description: 'manage the users of an organization', subCommands: [UserCreateCommand, UserListCommand, UserLimitsCommand] })
export class UserCommand extends CommandGroup {}
