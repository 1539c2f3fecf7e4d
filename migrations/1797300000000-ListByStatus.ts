import { MigrationInterface, QueryRunner } from 'typeorm';
import { createExchangesIndex } from './partitioned-index';

/**
 * `GET /v1/requests?status=` scanned the organization's exchanges newest first and kept those of the status: cheap
 * for `completed` (nearly every row), dear for the statuses calls seldom end with — on ten million exchanges a page
 * of `interrupted`, which none had, read all two million of the organization's rows and ran past the 15 s bound of
 * a read. Every status but `completed` and `pending` (those have their own ways: the organization's scan finds the
 * first at once, the pending index the second) is indexed by organization and time, so a page of one is read in
 * order from the index: the failures, about one call in twenty, are all it holds, and a completion that succeeds
 * adds nothing to it. Built month by month without holding up writes (createExchangesIndex; first built in one
 * statement, 12 s on ten million exchanges while writes waited).
 */
export class ListByStatus1797300000000 implements MigrationInterface {
  name = 'ListByStatus1797300000000';
  /** CREATE INDEX CONCURRENTLY runs outside a transaction */
  transaction = false;

  public async up(queryRunner: QueryRunner): Promise<void> {
    await createExchangesIndex(queryRunner, 'ix_exchanges_org_status', ['organization_id', 'status', 'created_at', 'id'], `"status" NOT IN ('completed', 'pending')`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_exchanges_org_status"`);
  }
}
