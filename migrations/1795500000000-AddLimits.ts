import { MigrationInterface, QueryRunner } from 'typeorm';

export class AddLimits1795500000000 implements MigrationInterface {
  name = 'AddLimits1795500000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "limits" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "user_id" uuid, "rpm" integer, "tpm" integer, "daily_budget_usd" double precision, "monthly_budget_usd" double precision, "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_limits" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(`CREATE UNIQUE INDEX "uq_limits_organization" ON "limits" ("organization_id") WHERE user_id IS NULL`);
    await queryRunner.query(`CREATE UNIQUE INDEX "uq_limits_user" ON "limits" ("user_id") WHERE user_id IS NOT NULL`);
    await queryRunner.query(
      `ALTER TABLE "limits" ADD CONSTRAINT "fk_limits_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`,
    );
    await queryRunner.query(
      `ALTER TABLE "limits" ADD CONSTRAINT "fk_limits_user" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE`,
    );
    await queryRunner.query(
      `CREATE TABLE "limit_counters" ("key" text NOT NULL, "value" double precision NOT NULL DEFAULT 0, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_limit_counters" PRIMARY KEY ("key"))`,
    );
    await queryRunner.query(`CREATE INDEX "ix_limit_counters_expires" ON "limit_counters" ("expires_at")`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX "public"."ix_limit_counters_expires"`);
    await queryRunner.query(`DROP TABLE "limit_counters"`);
    await queryRunner.query(`ALTER TABLE "limits" DROP CONSTRAINT "fk_limits_user"`);
    await queryRunner.query(`ALTER TABLE "limits" DROP CONSTRAINT "fk_limits_organization"`);
    await queryRunner.query(`DROP INDEX "public"."uq_limits_user"`);
    await queryRunner.query(`DROP INDEX "public"."uq_limits_organization"`);
    await queryRunner.query(`DROP TABLE "limits"`);
  }
}
