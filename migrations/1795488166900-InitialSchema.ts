import { MigrationInterface, QueryRunner } from "typeorm";

export class InitialSchema1795488166900 implements MigrationInterface {
    name = 'InitialSchema1795488166900'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "analysis_configs" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "name" text NOT NULL, "analysis_type" text NOT NULL, "categories" jsonb NOT NULL, "instructions" text, "model" text NOT NULL, "include_metadata" boolean NOT NULL DEFAULT false, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "deleted_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_095765224756af58a27aa4615d2" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_analysis_configs_org" ON "analysis_configs"  ("organization_id", "created_at") `);
        await queryRunner.query(`CREATE TABLE "analysis_results" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "exchange_id" text NOT NULL, "response_id" text, "config_id" uuid, "user_id" uuid, "persona_id" uuid, "cache_key" text NOT NULL, "analysis_type" text NOT NULL, "primary_category" text NOT NULL, "confidence" double precision NOT NULL, "reasoning" text NOT NULL, "categories" jsonb NOT NULL, "metadata" jsonb, "model" text NOT NULL, "input_tokens" integer NOT NULL DEFAULT '0', "output_tokens" integer NOT NULL DEFAULT '0', "total_tokens" integer NOT NULL DEFAULT '0', "cost" double precision, "key_id" uuid, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_56560e3511c57e1db64a3ad93eb" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_analysis_results_persona" ON "analysis_results"  ("persona_id", "created_at") `);
        await queryRunner.query(`CREATE INDEX "ix_analysis_results_exchange" ON "analysis_results"  ("organization_id", "exchange_id", "created_at") `);
        await queryRunner.query(`CREATE INDEX "ix_analysis_results_cache" ON "analysis_results"  ("organization_id", "cache_key", "created_at") `);
        await queryRunner.query(`CREATE TABLE "organizations" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "name" text NOT NULL, "disabled_at" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_6b031fcd0863e3f6b44230163f9" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_organizations_name" ON "organizations"  ("name") `);
        await queryRunner.query(`CREATE TABLE "revoked_tokens" ("jti" text NOT NULL, "revoked_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_b18aa48269f87cafba8c6310624" PRIMARY KEY ("jti"))`);
        await queryRunner.query(`CREATE TABLE "users" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "external_id" text NOT NULL, "name" text, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_a3ffb1c0c8416b9fc6f907b7433" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_users_org_external" ON "users"  ("organization_id", "external_id") `);
        await queryRunner.query(`CREATE TABLE "api_keys" ("id" uuid NOT NULL, "organization_id" uuid NOT NULL, "user_id" uuid, "label" text, "base_url" text, "last4" text NOT NULL, "encrypted_key" bytea NOT NULL, "revoked_at" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_5c8a79801b44bd27b79228e1dad" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_api_keys_org_user" ON "api_keys"  ("organization_id", "user_id") `);
        await queryRunner.query(`CREATE TABLE "persona_versions" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "persona_id" uuid NOT NULL, "version" integer NOT NULL, "content" text NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_795ecaf8bc20ec61f62f697e662" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_persona_versions" ON "persona_versions"  ("persona_id", "version") `);
        await queryRunner.query(`CREATE TABLE "personas" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "name" text NOT NULL, "description" text, "content" text NOT NULL, "version" integer NOT NULL DEFAULT '1', "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "deleted_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_714aa5d028f8f3e6645e971cecd" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_personas_org_live_name" ON "personas"  ("organization_id", "name") WHERE deleted_at IS NULL`);
        await queryRunner.query(`CREATE TABLE "exchanges" ("id" text NOT NULL, "organization_id" uuid NOT NULL, "user_id" uuid NOT NULL, "external_user_id" text NOT NULL, "session_id" text NOT NULL, "persona_id" uuid, "persona_version" integer, "endpoint" text NOT NULL, "model" text, "stream" boolean NOT NULL DEFAULT false, "status" text NOT NULL, "upstream_status" integer, "response_id" text, "request_body" jsonb, "response_body" jsonb, "output_text" text, "error" jsonb, "input_tokens" integer, "output_tokens" integer, "total_tokens" integer, "cached_tokens" integer, "reasoning_tokens" integer, "cost" double precision, "latency_ms" integer, "time_to_first_byte_ms" integer, "key_id" uuid, "key_source" text, "instance_id" text, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "completed_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_17ccd29473f939c68de98c2cea3" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_exchanges_pending" ON "exchanges"  ("status") WHERE status = 'pending'`);
        await queryRunner.query(`CREATE INDEX "ix_exchanges_persona_created" ON "exchanges"  ("persona_id", "created_at") `);
        await queryRunner.query(`CREATE INDEX "ix_exchanges_org_response" ON "exchanges"  ("organization_id", "response_id") `);
        await queryRunner.query(`CREATE INDEX "ix_exchanges_org_session" ON "exchanges"  ("organization_id", "session_id", "created_at") `);
        await queryRunner.query(`CREATE INDEX "ix_exchanges_org_created" ON "exchanges"  ("organization_id", "created_at") `);
        await queryRunner.query(`CREATE TABLE "ratings" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "organization_id" uuid NOT NULL, "exchange_id" text NOT NULL, "user_id" uuid NOT NULL, "persona_id" uuid, "rating" smallint NOT NULL, "comment" text, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "rated_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_0f31425b073219379545ad68ed9" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_ratings_org_persona" ON "ratings"  ("organization_id", "persona_id", "rated_at") `);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_ratings_exchange_user" ON "ratings"  ("exchange_id", "user_id") `);
        await queryRunner.query(`CREATE TABLE "cache_invalidations" ("id" BIGSERIAL NOT NULL, "kind" text NOT NULL, "ref" text NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_99f36cb7efaaaaf6854eab36d71" PRIMARY KEY ("id"))`);
        await queryRunner.query(`ALTER TABLE "users" ADD CONSTRAINT "fk_users_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "api_keys" ADD CONSTRAINT "fk_api_keys_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "api_keys" ADD CONSTRAINT "fk_api_keys_user" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "persona_versions" ADD CONSTRAINT "fk_persona_versions_persona" FOREIGN KEY ("persona_id") REFERENCES "personas"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "personas" ADD CONSTRAINT "fk_personas_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "ratings" ADD CONSTRAINT "fk_ratings_exchange" FOREIGN KEY ("exchange_id") REFERENCES "exchanges"("id") ON DELETE CASCADE`);
        await queryRunner.query(`ALTER TABLE "analysis_configs" ADD CONSTRAINT "fk_analysis_configs_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "analysis_configs" DROP CONSTRAINT "fk_analysis_configs_organization"`);
        await queryRunner.query(`ALTER TABLE "ratings" DROP CONSTRAINT "fk_ratings_exchange"`);
        await queryRunner.query(`ALTER TABLE "personas" DROP CONSTRAINT "fk_personas_organization"`);
        await queryRunner.query(`ALTER TABLE "persona_versions" DROP CONSTRAINT "fk_persona_versions_persona"`);
        await queryRunner.query(`ALTER TABLE "api_keys" DROP CONSTRAINT "fk_api_keys_user"`);
        await queryRunner.query(`ALTER TABLE "api_keys" DROP CONSTRAINT "fk_api_keys_organization"`);
        await queryRunner.query(`ALTER TABLE "users" DROP CONSTRAINT "fk_users_organization"`);
        await queryRunner.query(`DROP TABLE "cache_invalidations"`);
        await queryRunner.query(`DROP INDEX "public"."uq_ratings_exchange_user"`);
        await queryRunner.query(`DROP INDEX "public"."ix_ratings_org_persona"`);
        await queryRunner.query(`DROP TABLE "ratings"`);
        await queryRunner.query(`DROP INDEX "public"."ix_exchanges_org_created"`);
        await queryRunner.query(`DROP INDEX "public"."ix_exchanges_org_session"`);
        await queryRunner.query(`DROP INDEX "public"."ix_exchanges_org_response"`);
        await queryRunner.query(`DROP INDEX "public"."ix_exchanges_persona_created"`);
        await queryRunner.query(`DROP INDEX "public"."ix_exchanges_pending"`);
        await queryRunner.query(`DROP TABLE "exchanges"`);
        await queryRunner.query(`DROP INDEX "public"."uq_personas_org_live_name"`);
        await queryRunner.query(`DROP TABLE "personas"`);
        await queryRunner.query(`DROP INDEX "public"."uq_persona_versions"`);
        await queryRunner.query(`DROP TABLE "persona_versions"`);
        await queryRunner.query(`DROP INDEX "public"."ix_api_keys_org_user"`);
        await queryRunner.query(`DROP TABLE "api_keys"`);
        await queryRunner.query(`DROP INDEX "public"."uq_users_org_external"`);
        await queryRunner.query(`DROP TABLE "users"`);
        await queryRunner.query(`DROP TABLE "revoked_tokens"`);
        await queryRunner.query(`DROP INDEX "public"."uq_organizations_name"`);
        await queryRunner.query(`DROP TABLE "organizations"`);
        await queryRunner.query(`DROP INDEX "public"."ix_analysis_results_cache"`);
        await queryRunner.query(`DROP INDEX "public"."ix_analysis_results_exchange"`);
        await queryRunner.query(`DROP INDEX "public"."ix_analysis_results_persona"`);
        await queryRunner.query(`DROP TABLE "analysis_results"`);
        await queryRunner.query(`DROP INDEX "public"."ix_analysis_configs_org"`);
        await queryRunner.query(`DROP TABLE "analysis_configs"`);
    }

}
