import { MigrationInterface, QueryRunner } from 'typeorm';
import { createExchangesIndex } from './partitioned-index';

/**
 * `GET /v1/requests?endpoint=` scanned the organization's exchanges newest first and kept those of the route: cheap
 * for the model calls nearly every exchange is (`responses`, `chat.completions`), dear for every other route of the
 * API the proxy relays — a page of `embeddings` read all the newer calls of the others first, and a route none of
 * the organization's calls took (or a misspelt one) read all of its rows: on ten million exchanges, two million
 * (2.2 s with them in memory; the more of them on disk, the longer, up to the bound of a read). Every route but those two is indexed by organization and time, so a page of one is read
 * in order from the index; the model calls, nearly all of the writes, add nothing to it. Built month by month
 * without holding up writes (createExchangesIndex): on ten million exchanges, one minute from a cold cache and 4 s
 * from a warm one, which a plain CREATE INDEX would have made the proxy's writes wait.
 */
export class ListByRareEndpoint1797400000000 implements MigrationInterface {
  name = 'ListByRareEndpoint1797400000000';
  /** CREATE INDEX CONCURRENTLY runs outside a transaction */
  transaction = false;

  public async up(queryRunner: QueryRunner): Promise<void> {
    await createExchangesIndex(
      queryRunner,
      'ix_exchanges_org_endpoint',
      ['organization_id', 'endpoint', 'created_at', 'id'],
      `"endpoint" NOT IN ('responses', 'chat.completions')`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_exchanges_org_endpoint"`);
  }
}
