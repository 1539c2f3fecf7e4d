import { Command, Option, SubCommand } from 'nest-commander';
import { ACTION_PATTERN } from '../../audit/audit.dto';
import { AuditService } from '../../audit/audit.service';
import { AppException } from '../../common/app-exception';
import { parseInstant } from '../../common/dates';
import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT } from '../../common/pagination';
import { AdminCommand, JsonOption, table } from '../admin-command';
import { CommandGroup } from '../command-group';

interface AuditListOptions extends JsonOption {
  orgId?: string;
  limit?: string;
  after?: string;
  action?: string;
  from?: string;
  to?: string;
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_PAGE_LIMIT;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= MAX_PAGE_LIMIT)) throw AppException.invalid(`--limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}, got '${raw}'`, 'limit');
  return n;
}

@SubCommand({
  name: 'list',
  description: 'list the audit log, newest first: every organization and global change, or one organization with --org-id',
})
export class AuditListCommand extends AdminCommand<AuditListOptions> {
  constructor(private readonly audit: AuditService) {
    super();
  }

  @Option({ flags: '--org-id <id>', description: "only this organization's events" })
  parseOrgId(value: string): string {
    return value;
  }

  @Option({ flags: '--limit <n>', description: `events per page, 1–${MAX_PAGE_LIMIT} (default ${DEFAULT_PAGE_LIMIT})` })
  parseLimit(value: string): string {
    return value;
  }

  @Option({ flags: '--after <event-id>', description: 'the next page: the last id of the previous one' })
  parseAfter(value: string): string {
    return value;
  }

  @Option({ flags: '--action <action>', description: 'only this action (key.revoke, org.disable, …)' })
  parseAction(value: string): string {
    return value;
  }

  @Option({ flags: '--from <time>', description: 'from this ISO-8601 date or time (inclusive, UTC without a zone)' })
  parseFrom(value: string): string {
    return value;
  }

  @Option({ flags: '--to <time>', description: 'until this ISO-8601 date or time (exclusive, UTC without a zone)' })
  parseTo(value: string): string {
    return value;
  }

  async run(_params: string[], options: AuditListOptions): Promise<void> {
    if (options.action !== undefined && !ACTION_PATTERN.test(options.action)) {
      throw AppException.invalid(`--action must look like key.revoke, got '${options.action}'`, 'action');
    }
    const page = await this.audit.list({
      orgId: options.orgId ?? null,
      limit: parseLimit(options.limit),
      after: options.after,
      action: options.action,
      from: parseInstant(options.from, '--from'),
      to: parseInstant(options.to, '--to'),
    });
    this.print(options, page, () => {
      if (!page.data.length) return 'No audit events.';
      const rows = table(
        ['TIME', 'ORGANIZATION', 'ACTOR', 'ACTION', 'TARGET', 'DETAILS'],
        page.data.map((e) => [e.created_at, e.organization_id, e.actor, e.action, e.target_id, JSON.stringify(e.details)]),
      );
      return page.has_more ? `${rows}\nMore: --after ${page.last_id}` : rows;
    });
  }
}

@Command({ name: 'audit', description: 'read the audit log of administrative changes', subCommands: [AuditListCommand] })
export class AuditCommand extends CommandGroup {}
