import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit log: one row per administrative change, written in the change's transaction. No foreign keys: an
 * event outlives what it names (a deleted user, a revoked key). Listed newest first per organization, and
 * across organizations for the CLI, with (created_at, id) as the keyset.
 */
export class AddAuditEvents1795900000100 implements MigrationInterface {
  name = 'AddAuditEvents1795900000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "audit_events" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(), ` +
        `"organization_id" uuid, "actor" text NOT NULL, "actor_user_id" uuid, "action" text NOT NULL, "target_id" text, ` +
        `"details" jsonb NOT NULL DEFAULT '{}', CONSTRAINT "PK_audit_events" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(`CREATE INDEX "ix_audit_events_org_created" ON "audit_events" ("organization_id", "created_at" DESC, "id" DESC)`);
    await queryRunner.query(`CREATE INDEX "ix_audit_events_created" ON "audit_events" ("created_at" DESC, "id" DESC)`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS "audit_events"`);
  }
}
