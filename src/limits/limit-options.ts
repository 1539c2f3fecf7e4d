import { AppException } from '../common/app-exception';
import type { LimitPatch } from './limit-definitions';

/** The CLI's limit options as typed (strings), before validation. */
export interface LimitOptionValues {
  rpm?: string;
  tpm?: string;
  dailyBudget?: string;
  monthlyBudget?: string;
}

const REMOVE = /^(0+(\.0*)?|none)$/i;

function wholeNumber(flag: string, raw: string): number | null {
  const v = raw.trim();
  if (REMOVE.test(v)) return null;
  if (!/^\d+$/.test(v) || Number(v) > 1_000_000_000) {
    throw AppException.invalid(`${flag} must be a whole number from 1 to 1000000000, or 0/none to remove the limit (got '${raw}')`, flag);
  }
  return Number(v);
}

function dollars(flag: string, raw: string): number | null {
  const v = raw.trim().replace(/^\$/, '');
  if (REMOVE.test(v)) return null;
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) > 1_000_000_000) {
    throw AppException.invalid(`${flag} must be an amount in USD such as 25 or 0.50, or 0/none to remove the budget (got '${raw}')`, flag);
  }
  return Number(v);
}

/** `--rpm 60 --daily-budget 5 --tpm none` → a patch; `0`/`none` removes a limit, an option not given keeps it. */
export function parseLimitOptions(o: LimitOptionValues): LimitPatch {
  const patch: LimitPatch = {};
  if (o.rpm !== undefined) patch.rpm = wholeNumber('--rpm', o.rpm);
  if (o.tpm !== undefined) patch.tpm = wholeNumber('--tpm', o.tpm);
  if (o.dailyBudget !== undefined) patch.daily_budget_usd = dollars('--daily-budget', o.dailyBudget);
  if (o.monthlyBudget !== undefined) patch.monthly_budget_usd = dollars('--monthly-budget', o.monthlyBudget);
  return patch;
}
