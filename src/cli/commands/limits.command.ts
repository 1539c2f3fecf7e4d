import { Option, SubCommand } from 'nest-commander';
import { cliActor } from '../../audit/audit-actor';
import { LimitOptionValues, parseLimitOptions } from '../../limits/limit-options';
import type { LimitValues } from '../../limits/limit-definitions';
import { LimitsAdminService, LimitUsage } from '../../limits/limits-admin.service';
import { PricingService } from '../../pricing/pricing.service';
import { AdminCommand, JsonOption, record } from '../admin-command';
import { privacyLines } from './privacy-lines';

interface LimitsOptions extends JsonOption, LimitOptionValues {}

/** The limit lines of `org show` / `org limits` / `user limits`: each limit with what its window has used. */
function limitLines(limits: LimitValues, usage: LimitUsage, pricing: PricingService): [string, string][] {
  // money at the price table's precision: a sum of costs must not print as 0.00010259999999999999
  const money = (n: number) => `$${pricing.formatUsd(n)}`;
  const line = (limit: number | null, used: number | null, fmt: (n: number) => string, window: string) =>
    limit === null ? 'none' : `${fmt(limit)} (${fmt(used ?? 0)} used ${window})`;
  return [
    ['requests per minute', line(limits.rpm, usage.requests_this_minute, String, 'this minute')],
    ['tokens per minute', line(limits.tpm, usage.tokens_this_minute, String, 'this minute')],
    ['daily budget', line(limits.daily_budget_usd, usage.cost_today_usd, money, 'today (UTC)')],
    ['monthly budget', line(limits.monthly_budget_usd, usage.cost_this_month_usd, money, 'this month (UTC)')],
  ];
}

/** The options `org limits` and `user limits` share. */
abstract class LimitsOptionsCommand extends AdminCommand<LimitsOptions> {
  @Option({ flags: '--rpm <n>', description: 'requests per minute (0 or none removes the limit)' })
  parseRpm(value: string): string {
    return value;
  }

  @Option({ flags: '--tpm <n>', description: 'tokens per minute (0 or none removes the limit)' })
  parseTpm(value: string): string {
    return value;
  }

  @Option({ flags: '--daily-budget <usd>', description: 'USD per UTC day (0 or none removes the budget)' })
  parseDailyBudget(value: string): string {
    return value;
  }

  @Option({ flags: '--monthly-budget <usd>', description: 'USD per UTC month (0 or none removes the budget)' })
  parseMonthlyBudget(value: string): string {
    return value;
  }
}

@SubCommand({
  name: 'limits',
  arguments: '<org-id>',
  description: "set an organization's limits and budgets (without options: show them)",
})
export class OrgLimitsCommand extends LimitsOptionsCommand {
  constructor(
    private readonly limits: LimitsAdminService,
    private readonly pricing: PricingService,
  ) {
    super();
  }

  async run([orgId]: string[], options: LimitsOptions): Promise<void> {
    const org = await this.limits.setOrganizationLimits(orgId, parseLimitOptions(options), cliActor());
    this.print(options, org, () => record(`Limits of organization '${org.name}' (${org.id})`, limitLines(org.limits, org.usage, this.pricing)));
  }
}

@SubCommand({
  name: 'limits',
  arguments: '<internal-user-id>',
  description: "set a user's limits and budgets, by the internal id `user create` printed (without options: show them)",
})
export class UserLimitsCommand extends LimitsOptionsCommand {
  constructor(
    private readonly limits: LimitsAdminService,
    private readonly pricing: PricingService,
  ) {
    super();
  }

  async run([userId]: string[], options: LimitsOptions): Promise<void> {
    const user = await this.limits.setUserLimits(userId, parseLimitOptions(options), cliActor());
    this.print(options, user, () => record(`Limits of user '${user.external_id}' (${user.id})`, limitLines(user.limits, user.usage, this.pricing)));
  }
}

@SubCommand({ name: 'show', arguments: '<org-id>', description: 'show an organization with its limits and current consumption' })
export class OrgShowCommand extends AdminCommand {
  constructor(
    private readonly limits: LimitsAdminService,
    private readonly pricing: PricingService,
  ) {
    super();
  }

  async run([orgId]: string[], options: JsonOption): Promise<void> {
    const org = await this.limits.showOrganization(orgId);
    this.print(options, org, () =>
      record(`Organization '${org.name}'`, [
        ['id', org.id],
        ['status', org.disabled ? 'disabled' : 'active'],
        ['created', org.created_at],
        ...privacyLines(org.settings),
        ...limitLines(org.limits, org.usage, this.pricing),
      ]),
    );
  }
}
