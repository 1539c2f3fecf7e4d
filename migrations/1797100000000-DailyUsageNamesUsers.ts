import { MigrationInterface, QueryRunner } from 'typeorm';
import { triggerFunction as keyedByUserId } from './1796700000000-KeepDailyUsage';

/**
 * The daily usage (migration KeepDailyUsage) keys its 'user' rows by the user's X-User-ID (`external_user_id`)
 * instead of the internal user id. Usage by user answers X-User-IDs: keyed by the internal id, every user of the
 * period (about 20,000 for a busy organization's month) was summed over their days, looked up in `users`, then
 * summed again with the part-days read from the rows; keyed by what the answer shows, the days and the part-days
 * are summed once, together, with no lookup. An X-User-ID names one user of an organization, so the totals are
 * the same.
 *
 * - usage_daily_changes carries `external_user_id` in place of `user_id`: the trigger on `exchanges` takes it
 *   from the rows (the recorder writes both), the one on `analysis_results` from the result's user (a result of
 *   no user, or of a user no longer known, counts under no user, as the report named it before).
 * - usage_daily's existing 'user' rows are re-keyed (summed per X-User-ID; an id no longer in `users` under no
 *   user), and the changes not merged yet are given their X-User-ID, in this migration's transaction.
 */
export class DailyUsageNamesUsers1797100000000 implements MigrationInterface {
  name = 'DailyUsageNamesUsers1797100000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`LOCK TABLE "usage_daily", "usage_daily_changes" IN EXCLUSIVE MODE`);
    await queryRunner.query(`ALTER TABLE "usage_daily_changes" ADD COLUMN "external_user_id" text`);
    await queryRunner.query(
      `UPDATE "usage_daily_changes" c SET external_user_id = u.external_id FROM users u WHERE u.id = c.user_id AND u.organization_id = c.organization_id`,
    );
    await queryRunner.query(`ALTER TABLE "usage_daily_changes" DROP COLUMN "user_id"`);
    await queryRunner.query(triggerFunction('exchanges'));
    await queryRunner.query(triggerFunction('analysis_results'));
    await rekey(queryRunner, `LEFT JOIN users u ON u.id = d.key::uuid AND u.organization_id = d.organization_id`, 'u.external_id');
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`LOCK TABLE "usage_daily", "usage_daily_changes" IN EXCLUSIVE MODE`);
    await queryRunner.query(`ALTER TABLE "usage_daily_changes" ADD COLUMN "user_id" uuid`);
    await queryRunner.query(
      `UPDATE "usage_daily_changes" c SET user_id = u.id FROM users u WHERE u.external_id = c.external_user_id AND u.organization_id = c.organization_id`,
    );
    await queryRunner.query(`ALTER TABLE "usage_daily_changes" DROP COLUMN "external_user_id"`);
    await queryRunner.query(keyedByUserId('exchanges'));
    await queryRunner.query(keyedByUserId('analysis_results'));
    await rekey(queryRunner, `LEFT JOIN users u ON u.external_id = d.key AND u.organization_id = d.organization_id`, 'u.id::text');
  }
}

const SUMS = ['requests', 'errors', 'input_tokens', 'output_tokens', 'total_tokens', 'cost'];

/** Replaces the 'user' rows of usage_daily by the same sums under the key `key` (over d and the join). */
async function rekey(queryRunner: QueryRunner, join: string, key: string): Promise<void> {
  await queryRunner.query(
    `CREATE TEMP TABLE rekeyed_usage ON COMMIT DROP AS
     SELECT d.organization_id, d.day, d.source, ${key} AS key, ${SUMS.map((c) => `sum(d.${c}) AS ${c}`).join(', ')}
       FROM usage_daily d ${join}
      WHERE d.dimension = 'user'
      GROUP BY 1, 2, 3, 4`,
  );
  await queryRunner.query(`DELETE FROM usage_daily WHERE dimension = 'user'`);
  await queryRunner.query(
    `INSERT INTO usage_daily (organization_id, dimension, day, source, key, ${SUMS.join(', ')})
     SELECT organization_id, 'user', day, source, key, ${SUMS.join(', ')} FROM rekeyed_usage WHERE requests <> 0`,
  );
  await queryRunner.query(`DROP TABLE rekeyed_usage`);
  await queryRunner.query(`ANALYZE usage_daily, usage_daily_changes`);
}

/** What a row counts as: its source, when it is an error (as the analytics reports count them), and its user's X-User-ID. */
const SHAPES = {
  exchanges: { source: 'proxy', error: `status NOT IN ('completed', 'pending')`, userColumn: 'external_user_id', userKey: 'c.external_user_id', join: '' },
  analysis_results: {
    source: 'analysis',
    error: `status = 'failed'`,
    userColumn: 'user_id',
    userKey: 'u.external_id',
    join: 'LEFT JOIN users u ON u.id = c.user_id AND u.organization_id = c.organization_id',
  },
} as const;

/**
 * The statement-level trigger function of a table, as KeepDailyUsage made it but for the user's key (X-User-ID):
 * the rows a statement inserted are added, those it deleted subtracted, and for an update the old version of each
 * changed row subtracted and the new one added (only rows whose counted columns changed: an update of bodies alone
 * appends nothing). A migration keeps the SQL it ran as it was: this one is its own.
 */
function triggerFunction(table: keyof typeof SHAPES): string {
  const s = SHAPES[table];
  const counted = ['organization_id', 'created_at', s.userColumn, 'model', 'persona_id', 'status', 'input_tokens', 'output_tokens', 'total_tokens', 'cost'];
  const append = (rows: string) =>
    `INSERT INTO usage_daily_changes (organization_id, day, source, external_user_id, model, persona_id, requests, errors, input_tokens, output_tokens, total_tokens, cost)
     SELECT c.organization_id, (c.created_at AT TIME ZONE 'UTC')::date, '${s.source}', ${s.userKey}, c.model, c.persona_id, sum(c.sign),
            coalesce(sum(c.sign) FILTER (WHERE c.${s.error}), 0), coalesce(sum(c.sign * c.input_tokens), 0), coalesce(sum(c.sign * c.output_tokens), 0),
            coalesce(sum(c.sign * c.total_tokens), 0), coalesce(sum(c.sign * c.cost), 0)
       FROM (${rows}) c ${s.join}
      GROUP BY 1, 2, 4, 5, 6
     HAVING sum(c.sign) <> 0 OR sum(c.sign) FILTER (WHERE c.${s.error}) <> 0 OR sum(c.sign * c.input_tokens) <> 0
         OR sum(c.sign * c.output_tokens) <> 0 OR sum(c.sign * c.total_tokens) <> 0 OR sum(c.sign * c.cost) <> 0`;
  const cols = counted.join(', ');
  // rows whose counted columns an update left alone cancel out (EXCEPT ALL: no pairing of old and new needed,
  // so a row moved to another partition by a new created_at counts as changed like any other)
  const changed = (from: string, minus: string) => `SELECT id, ${cols} FROM ${from} EXCEPT ALL SELECT id, ${cols} FROM ${minus}`;
  return `CREATE OR REPLACE FUNCTION usage_daily_of_${table}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    ${append(`SELECT 1 AS sign, ${cols} FROM new_rows`)};
  ELSIF TG_OP = 'DELETE' THEN
    ${append(`SELECT -1 AS sign, ${cols} FROM old_rows`)};
  ELSE
    ${append(`SELECT 1 AS sign, ${cols} FROM (${changed('new_rows', 'old_rows')}) n UNION ALL SELECT -1, ${cols} FROM (${changed('old_rows', 'new_rows')}) o`)};
  END IF;
  RETURN NULL;
END
$fn$`;
}
