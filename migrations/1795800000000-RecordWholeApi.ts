import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every route of the OpenAI API is recorded: the method and route template of each call, OpenAI's own request id,
 * the upstream object it made or named, the content type and size of bodies that are not stored (binary,
 * multipart) and whether a stored body was cut at RECORD_BODY_MAX. `upstream_objects` remembers who made each
 * upstream object through the proxy and with which key (object affinity and ownership). Response ids are looked up
 * across organizations (an object of another organization is refused), so their index no longer leads with the
 * organization.
 */
export class RecordWholeApi1795800000000 implements MigrationInterface {
  name = 'RecordWholeApi1795800000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "exchanges" ADD "method" text, ADD "route" text, ADD "upstream_request_id" text, ADD "object_id" text,
        ADD "request_content_type" text, ADD "request_bytes" bigint, ADD "response_content_type" text, ADD "response_bytes" bigint,
        ADD "body_truncated" boolean`,
    );
    await queryRunner.query(`CREATE INDEX "ix_exchanges_response" ON "exchanges" ("response_id") WHERE "response_id" IS NOT NULL`);
    await queryRunner.query(`DROP INDEX "ix_exchanges_org_response"`);
    await queryRunner.query(
      `CREATE TABLE "upstream_objects" ("id" text NOT NULL, "organization_id" uuid NOT NULL, "user_id" uuid, "key_id" uuid NOT NULL,
        "route" text NOT NULL, "exchange_id" text NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        "deleted_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_upstream_objects" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(`CREATE INDEX "ix_upstream_objects_org_created" ON "upstream_objects" ("organization_id", "created_at")`);
    await queryRunner.query(
      `ALTER TABLE "upstream_objects" ADD CONSTRAINT "fk_upstream_objects_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "upstream_objects"`);
    await queryRunner.query(`CREATE INDEX "ix_exchanges_org_response" ON "exchanges" ("organization_id", "response_id")`);
    await queryRunner.query(`DROP INDEX "ix_exchanges_response"`);
    await queryRunner.query(
      `ALTER TABLE "exchanges" DROP COLUMN "method", DROP COLUMN "route", DROP COLUMN "upstream_request_id", DROP COLUMN "object_id",
        DROP COLUMN "request_content_type", DROP COLUMN "request_bytes", DROP COLUMN "response_content_type", DROP COLUMN "response_bytes",
        DROP COLUMN "body_truncated"`,
    );
  }
}
