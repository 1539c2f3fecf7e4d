import { Command, Option, SubCommand } from 'nest-commander';
import { cliActor } from '../../audit/audit-actor';
import { AppException } from '../../common/app-exception';
import { CAPTURE_MODES, parseCaptureMode, parseRetentionDays } from '../../auth/org-privacy';
import { OrganizationsService, OrganizationView } from '../../auth/organizations.service';
import { AdminCommand, JsonOption, record, table } from '../admin-command';
import { CommandGroup } from '../command-group';
import { OrgLimitsCommand, OrgShowCommand } from './limits.command';
import { privacyLines } from './privacy-lines';

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

@SubCommand({
  name: 'capture',
  arguments: '<org-id> <mode>',
  description: `what is stored of each exchange: ${CAPTURE_MODES.join(' | ')} (redacted replaces personal data before it is written; metadata stores no bodies or text)`,
})
export class OrgCaptureCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run([orgId, mode]: string[], options: JsonOption): Promise<void> {
    const org = await this.orgs.changePrivacy(orgId, { captureMode: parseCaptureMode(mode, 'mode') }, cliActor());
    this.print(options, org, () => record(`Privacy settings of organization '${org.name}' (${org.id})`, privacyLines(org.settings)));
  }
}

interface RetentionOptions extends JsonOption {
  contentDays?: string;
  days?: string;
}

@SubCommand({
  name: 'retention',
  arguments: '<org-id>',
  description: 'how long bodies (--content-days) and whole exchanges (--days) are kept; `off` keeps them (without options: show them)',
})
export class OrgRetentionCommand extends AdminCommand<RetentionOptions> {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  @Option({ flags: '--content-days <n>', description: 'clear bodies and text after n days (off: keep them)' })
  parseContentDays(value: string): string {
    return value;
  }

  @Option({ flags: '--days <n>', description: 'delete whole exchanges, with their ratings and analyses, after n days (off: keep them)' })
  parseDays(value: string): string {
    return value;
  }

  async run([orgId]: string[], options: RetentionOptions): Promise<void> {
    const change = {
      ...(options.contentDays !== undefined && { contentRetentionDays: parseRetentionDays(options.contentDays, 'content-days') }),
      ...(options.days !== undefined && { retentionDays: parseRetentionDays(options.days, 'days') }),
    };
    const org = Object.keys(change).length ? await this.orgs.changePrivacy(orgId, change, cliActor()) : await this.orgs.get(orgId);
    this.print(options, org, () => record(`Privacy settings of organization '${org.name}' (${org.id})`, privacyLines(org.settings)));
  }
}

@SubCommand({
  name: 'safety-id',
  arguments: '<org-id> <on|off>',
  description: "on: add OpenAI's safety_identifier (a keyed hash of organization and end user) to model calls that lack one",
})
export class OrgSafetyIdCommand extends AdminCommand {
  constructor(private readonly orgs: OrganizationsService) {
    super();
  }

  async run([orgId, value]: string[], options: JsonOption): Promise<void> {
    if (value !== 'on' && value !== 'off') throw AppException.invalid("safety-id takes 'on' or 'off'", 'value');
    const org = await this.orgs.changePrivacy(orgId, { safetyIdentifier: value === 'on' }, cliActor());
    this.print(options, org, () => record(`Privacy settings of organization '${org.name}' (${org.id})`, privacyLines(org.settings)));
  }
}

@Command({
  name: 'org',
  description: 'manage organizations',
  subCommands: [
    OrgCreateCommand,
    OrgListCommand,
    OrgDisableCommand,
    OrgEnableCommand,
    OrgShowCommand,
    OrgLimitsCommand,
    OrgCaptureCommand,
    OrgRetentionCommand,
    OrgSafetyIdCommand,
  ],
})
export class OrgCommand extends CommandGroup {}
