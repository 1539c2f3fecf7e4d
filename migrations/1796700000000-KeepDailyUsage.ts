import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Daily usage kept as it is written, so that usage analytics reads whole days from a few rows per day instead of
 * every exchange of the period.
 *
 * - usage_daily: per organization, UTC day, source ('proxy': exchanges; 'analysis': analysis results) and
 *   dimension, the requests, errors, tokens and cost of the STORED rows, one row per key of the dimension:
 *   'user' (user_id), 'model' (model), 'persona' (persona_id). A day's total is the sum of its 'model' rows.
 * - usage_daily_changes: what writes changed since the last merge, appended by statement-level triggers on
 *   `exchanges` and `analysis_results` (one aggregated INSERT per statement, in the writing transaction: a row
 *   counts exactly when it is committed), one row per (organization, day, source, user, model, persona) a statement
 *   touched. Appended, never updated, so concurrent writers never wait on each other for a total; the server
 *   merges the changes into usage_daily every few seconds (UsageDailyRepository), and readers add the changes not
 *   merged yet.
 *
 * Deleting stored rows (retention, erasure) subtracts them here: these totals mirror what is stored, and what
 * retention deleted stays counted in usage_rollups as before. Existing rows are added by this migration, in its
 * transaction (the triggers are in place first, so no write falls between the two); it reads every stored row
 * once (about 25 s for ten million exchanges on two cores), and writes wait for it.
 */
export class KeepDailyUsage1796700000000 implements MigrationInterface {
  name = 'KeepDailyUsage1796700000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    const sums = `"requests" bigint NOT NULL DEFAULT 0, "errors" bigint NOT NULL DEFAULT 0, "input_tokens" bigint NOT NULL DEFAULT 0,
      "output_tokens" bigint NOT NULL DEFAULT 0, "total_tokens" bigint NOT NULL DEFAULT 0, "cost" double precision NOT NULL DEFAULT 0`;
    await queryRunner.query(
      `CREATE TABLE "usage_daily" ("organization_id" uuid NOT NULL, "day" date NOT NULL, "source" text NOT NULL, "dimension" text NOT NULL, "key" text, ${sums},
        CONSTRAINT "fk_usage_daily_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE)`,
    );
    // covering: a period's rows are read by index-only scans (a day's rows of all dimensions and organizations
    // lie together on the heap, so fetching them would read a page per row)
    await queryRunner.query(
      `CREATE UNIQUE INDEX "uq_usage_daily_key" ON "usage_daily" ("organization_id", "dimension", "day", "source", "key")
        INCLUDE ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost") NULLS NOT DISTINCT`,
    );
    // no index and no foreign key: the cheapest insert there is; it stays small (merged and emptied every few seconds)
    await queryRunner.query(
      `CREATE TABLE "usage_daily_changes" ("organization_id" uuid NOT NULL, "day" date NOT NULL, "source" text NOT NULL, "user_id" uuid, "model" text,
        "persona_id" uuid, ${sums})`,
    );
    await queryRunner.query(`ALTER TABLE "usage_daily_changes" SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000)`);

    await queryRunner.query(triggerFunction('exchanges'));
    await queryRunner.query(triggerFunction('analysis_results'));
    for (const table of ['exchanges', 'analysis_results']) {
      const fn = `usage_daily_of_${table}`;
      await queryRunner.query(`CREATE TRIGGER "${fn}_insert" AFTER INSERT ON "${table}" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`);
      await queryRunner.query(
        `CREATE TRIGGER "${fn}_update" AFTER UPDATE ON "${table}" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`,
      );
      await queryRunner.query(`CREATE TRIGGER "${fn}_delete" AFTER DELETE ON "${table}" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`);
    }

    // what is stored already, grouped per (day, user, model, persona) first: far fewer rows to spread over the dimensions
    for (const table of ['exchanges', 'analysis_results'] as const) {
      const s = SHAPES[table];
      await queryRunner.query(
        `INSERT INTO "usage_daily" (organization_id, day, source, dimension, key, requests, errors, input_tokens, output_tokens, total_tokens, cost)
         SELECT g.organization_id, g.day, '${s.source}', d.dimension, d.key, sum(g.requests), sum(g.errors), sum(g.input_tokens), sum(g.output_tokens),
                sum(g.total_tokens), sum(g.cost)
           FROM (SELECT organization_id, (created_at AT TIME ZONE 'UTC')::date AS day, user_id, model, persona_id, count(*) AS requests,
                        count(*) FILTER (WHERE ${s.error}) AS errors, coalesce(sum(input_tokens), 0) AS input_tokens,
                        coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost), 0) AS cost
                   FROM "${table}" GROUP BY 1, 2, 3, 4, 5) g
          CROSS JOIN LATERAL (VALUES ('user', g.user_id::text), ('model', g.model), ('persona', g.persona_id::text)) d(dimension, key)
          WHERE g.organization_id IN (SELECT id FROM organizations)
          GROUP BY 1, 2, 4, 5`,
      );
    }
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['exchanges', 'analysis_results']) {
      for (const op of ['insert', 'update', 'delete']) await queryRunner.query(`DROP TRIGGER IF EXISTS "usage_daily_of_${table}_${op}" ON "${table}"`);
      await queryRunner.query(`DROP FUNCTION IF EXISTS usage_daily_of_${table}()`);
    }
    await queryRunner.query(`DROP TABLE IF EXISTS "usage_daily_changes"`);
    await queryRunner.query(`DROP TABLE IF EXISTS "usage_daily"`);
  }
}

/** What a row counts as: its source, and when it is an error (as the analytics reports count them). */
const SHAPES = {
  exchanges: { source: 'proxy', error: `status NOT IN ('completed', 'pending')` },
  analysis_results: { source: 'analysis', error: `status = 'failed'` },
} as const;

/**
 * The statement-level trigger function of a table: the rows a statement inserted are added, those it deleted
 * subtracted, and for an update the old version of each changed row subtracted and the new one added (only rows
 * whose counted columns changed: an update of bodies alone appends nothing).
 */
export function triggerFunction(table: keyof typeof SHAPES): string {
  const s = SHAPES[table];
  const counted = ['organization_id', 'created_at', 'user_id', 'model', 'persona_id', 'status', 'input_tokens', 'output_tokens', 'total_tokens', 'cost'];
  const append = (rows: string) =>
    `INSERT INTO usage_daily_changes (organization_id, day, source, user_id, model, persona_id, requests, errors, input_tokens, output_tokens, total_tokens, cost)
     SELECT c.organization_id, (c.created_at AT TIME ZONE 'UTC')::date, '${s.source}', c.user_id, c.model, c.persona_id, sum(c.sign),
            coalesce(sum(c.sign) FILTER (WHERE c.${s.error}), 0), coalesce(sum(c.sign * c.input_tokens), 0), coalesce(sum(c.sign * c.output_tokens), 0),
            coalesce(sum(c.sign * c.total_tokens), 0), coalesce(sum(c.sign * c.cost), 0)
       FROM (${rows}) c
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
