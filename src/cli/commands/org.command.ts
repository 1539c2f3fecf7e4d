import { Command, SubCommand } from 'nest-commander';
import { cliActor } from '../../audit/audit-actor';
import { OrganizationsService, OrganizationView } from '../../auth/organizations.service';
import { AdminCommand, JsonOption, record, table } from '../admin-command';
import { CommandGroup } from '../command-group';
import { OrgLimitsCommand, OrgShowCommand } from './limits.command';

const status = (o: OrganizationView) => (o.disabled ? 'disabled' : 'active');

@SubCommand({ name: 'create', arguments: '<name>', description: 'create an organization' })
export class OrgCreateCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run([name]: string[], options: JsonOption): Promise<void> {
    const org = await this.orgs.create(name, cliActor());
    this.print(options, org, () => record(`Created organization '${org.name}'`, [['id', org.id]]));
  }
}

@SubCommand({ name: 'list', description: 'list the organizations' })
export class OrgListCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run(_params: string[], options: JsonOption): Promise<void> {
    const data = await this.orgs.list();
    this.print(options, { data }, () =>
      data.length ? table(['ID', 'NAME', 'STATUS', 'CREATED'], data.map((o) => [o.id, o.name, status(o), o.created_at])) : 'No organizations.',
    );
  }
}

@SubCommand({ name: 'disable', arguments: '<org-id>', description: "disable an organization: its tokens are refused" })
export class OrgDisableCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const org = await this.orgs.disable(orgId, cliActor());
    this.print(options, org, () => `Disabled organization '${org.name}' (${org.id}); its tokens are refused from now on.`);
  }
}

@SubCommand({ name: 'enable', arguments: '<org-id>', description: 'enable a disabled organization: its tokens are accepted again' })
export class OrgEnableCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const org = await this.orgs.enable(orgId, cliActor());
    this.print(options, org, () => `Enabled organization '${org.name}' (${org.id}); its tokens are accepted again.`);
  }
}

@Command({
  name: 'org',
  description: 'manage organizations',
  subCommands: [OrgCreateCommand, OrgListCommand, OrgDisableCommand, OrgEnableCommand, OrgShowCommand, OrgLimitsCommand],
})
export class OrgCommand extends CommandGroup {}
