import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * limit_counters_take(keys, amounts, limits, expires): the PostgreSQL side of an admission, in one round trip.
 * Every counter of the call (the organization's and the user's, every window) is created if missing and locked in
 * key order, checked against its limit, and only when none has reached it are the amounts added; a refused call
 * changes nothing. The earlier single statement incremented first and undid after a refusal, and other admissions
 * saw the increment in between: a user's refused calls spent the organization's requests. Returns the index
 * (1-based) of the first counter at its limit, 0 when admitted, followed by every counter's value before.
 */
export class AddLimitCountersTake1795523400000 implements MigrationInterface {
  name = 'AddLimitCountersTake1795523400000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE OR REPLACE FUNCTION limit_counters_take(p_keys text[], p_amounts float8[], p_limits float8[], p_expires timestamptz[])
      RETURNS float8[] LANGUAGE plpgsql AS $$
      DECLARE
        v_values float8[];
        v_refused bigint;
      BEGIN
        -- created and locked in one order by every caller: concurrent admissions queue, they cannot deadlock
        INSERT INTO limit_counters (key, value, expires_at)
          SELECT k.key, 0, k.expires_at FROM unnest(p_keys, p_expires) AS k(key, expires_at) ORDER BY k.key COLLATE "C"
          ON CONFLICT (key) DO NOTHING;
        PERFORM 1 FROM limit_counters WHERE key = ANY (p_keys) ORDER BY key COLLATE "C" FOR UPDATE;
        SELECT array_agg(coalesce(c.value, 0) ORDER BY a.ord), min(a.ord) FILTER (WHERE c.value >= a.lim)
          INTO v_values, v_refused
          FROM unnest(p_keys, p_limits) WITH ORDINALITY AS a(key, lim, ord)
          LEFT JOIN limit_counters c ON c.key = a.key;
        IF v_refused IS NULL THEN
          UPDATE limit_counters c SET value = c.value + a.amount
            FROM unnest(p_keys, p_amounts) AS a(key, amount)
           WHERE c.key = a.key AND a.amount <> 0;
        END IF;
        RETURN coalesce(v_refused, 0)::float8 || v_values;
      END
      $$`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP FUNCTION IF EXISTS limit_counters_take(text[], float8[], float8[], timestamptz[])`);
  }
}
