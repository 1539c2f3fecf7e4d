import { MigrationInterface, QueryRunner } from 'typeorm';
import { judgedExchangeFunction } from './1797000000000-JudgementsKnowTheirExchange';

/**
 * A call in progress is recorded in `open_calls` (a small table) instead of as a pending row of `exchanges`, and its
 * exchange is written whole, once, when it ends (the open call deleted in the same statement). A pending row
 * updated with its outcome left a dead row version and a second set of index entries in the largest table for
 * every stream (the completion changes indexed columns, so it is never a HOT update): PostgreSQL's CPU per stream
 * was about twice a whole row's, and grew with the garbage the updates left until vacuum caught up. The open
 * calls' churn stays in a table as small as the number of calls in flight.
 *
 * The columns are those of a pending row (what is known before the upstream is called). Pending rows written into
 * `exchanges` by an earlier version stay readable and are swept as before. A rating or an analysis given while
 * the call runs takes the time of its exchange (JudgementsKnowTheirExchange) from the open call.
 */
export class OpenCalls1797500000000 implements MigrationInterface {
  name = 'OpenCalls1797500000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE TABLE IF NOT EXISTS "open_calls" (
      "id" text PRIMARY KEY,
      "organization_id" uuid NOT NULL,
      "user_id" uuid NOT NULL,
      "external_user_id" text NOT NULL,
      "session_id" text NOT NULL,
      "persona_id" uuid,
      "persona_version" integer,
      "endpoint" text NOT NULL,
      "model" text,
      "stream" boolean NOT NULL DEFAULT false,
      "request_body" jsonb,
      "key_id" uuid,
      "key_source" text,
      "instance_id" text,
      "created_at" timestamptz NOT NULL,
      "method" text,
      "route" text,
      "request_content_type" text,
      "capture_mode" text NOT NULL DEFAULT 'full'
    )`);
    // readers look for an organization's open calls, newest first (a few rows: the calls in flight)
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_open_calls_org_created" ON "open_calls" ("organization_id", "created_at")`);
    await queryRunner.query(judgedExchange);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(judgedExchangeFunction(null));
    await queryRunner.query(`DROP TABLE IF EXISTS "open_calls"`);
  }
}

/** The trigger function filling a judgement's exchange time and persona version, from an open call too. */
const judgedExchange = `CREATE OR REPLACE FUNCTION judged_exchange() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.exchange_created_at IS NULL THEN
    SELECT e.created_at, e.persona_version INTO NEW.exchange_created_at, NEW.persona_version
      FROM exchanges e
     WHERE e.id = NEW.exchange_id AND e.organization_id = NEW.organization_id
     ORDER BY e.created_at DESC
     LIMIT 1;
    IF NEW.exchange_created_at IS NULL THEN
      SELECT o.created_at, o.persona_version INTO NEW.exchange_created_at, NEW.persona_version
        FROM open_calls o
       WHERE o.id = NEW.exchange_id AND o.organization_id = NEW.organization_id;
    END IF;
  END IF;
  RETURN NEW;
END
$fn$`;
