import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageDailyRepository } from '../../src/exchanges/usage-daily/usage-daily.repository';
import { MediumDatabase, openMediumDatabase, outcomeOf, pendingRow, RecorderBench } from './recorder-harness';

let database: MediumDatabase;
let bench: RecorderBench;
let repo: UsageDailyRepository;
beforeAll(async () => {
  database = await openMediumDatabase();
  bench = database.recorder();
  repo = new UsageDailyRepository(database.dataSource);
});
afterAll(async () => {
  await bench?.close();
  await database?.close();
});

const SUMS = `sum(requests)::int AS requests, sum(errors)::int AS errors, sum(input_tokens)::int AS input, sum(output_tokens)::int AS output,
              sum(total_tokens)::int AS total, round(sum(cost)::numeric, 9)::float8 AS cost`;

/** The organization's daily usage as readers see it: merged rows plus the changes not merged yet. */
async function kept(orgId: string): Promise<unknown[]> {
  return database.dataSource.query(
    `SELECT source, dimension, key, day::text AS day, ${SUMS}
       FROM (SELECT source, dimension, key, day, requests, errors, input_tokens, output_tokens, total_tokens, cost FROM usage_daily WHERE organization_id = $1
             UNION ALL
             SELECT c.source, x.dimension, x.key, c.day, c.requests, c.errors, c.input_tokens, c.output_tokens, c.total_tokens, c.cost
               FROM usage_daily_changes c
              CROSS JOIN LATERAL (VALUES ('user', c.external_user_id), ('model', c.model), ('persona', c.persona_id::text)) x(dimension, key)
              WHERE c.organization_id = $1) d
      GROUP BY 1, 2, 3, 4 HAVING sum(requests) <> 0
      ORDER BY 1, 2, 3, 4`,
    [orgId],
  );
}

/** The same figures counted from the stored rows themselves (a user by X-User-ID: an analysis by its user's). */
async function counted(orgId: string): Promise<unknown[]> {
  return database.dataSource.query(
    `SELECT source, d.dimension, d.key, day::text AS day, ${SUMS}
       FROM (SELECT 'proxy' AS source, (created_at AT TIME ZONE 'UTC')::date AS day, external_user_id AS user_key, model, persona_id, 1 AS requests,
                    (status NOT IN ('completed', 'pending'))::int AS errors, coalesce(input_tokens, 0) AS input_tokens,
                    coalesce(output_tokens, 0) AS output_tokens, coalesce(total_tokens, 0) AS total_tokens, coalesce(cost, 0) AS cost
               FROM exchanges WHERE organization_id = $1
             UNION ALL
             SELECT 'analysis', (a.created_at AT TIME ZONE 'UTC')::date, u.external_id, a.model, a.persona_id, 1, (a.status = 'failed')::int,
                    a.input_tokens, a.output_tokens, a.total_tokens, coalesce(a.cost, 0)
               FROM analysis_results a LEFT JOIN users u ON u.id = a.user_id WHERE a.organization_id = $1) r
      CROSS JOIN LATERAL (VALUES ('user', r.user_key), ('model', r.model), ('persona', r.persona_id::text)) d(dimension, key)
      GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4`,
    [orgId],
  );
}

async function changesOf(orgId: string): Promise<number> {
  const rows = await database.dataSource.query(`SELECT count(*)::int AS n FROM usage_daily_changes WHERE organization_id = $1`, [orgId]);
  return rows[0].n;
}

async function organization(): Promise<string> {
  const rows = await database.dataSource.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`usage-daily-${randomUUID()}`]);
  return rows[0].id;
}

/** A user of the organization: their internal id and X-User-ID. */
async function user(orgId: string, externalId: string): Promise<{ id: string; externalId: string }> {
  const rows = await database.dataSource.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, $2) RETURNING id`, [orgId, externalId]);
  return { id: rows[0].id, externalId };
}

async function analysis(orgId: string, exchangeId: string, over: { userId?: string | null; personaId?: string | null; status?: string; model?: string } = {}): Promise<string> {
  const rows = await database.dataSource.query(
    `INSERT INTO analysis_results (organization_id, exchange_id, user_id, persona_id, cache_key, analysis_type, primary_category, model,
                                   input_tokens, output_tokens, total_tokens, cost, status)
     VALUES ($1, $2, $3, $4, md5(random()::text), 'intent', 'billing', $5, 40, 5, 45, 0.00002, $6) RETURNING id`,
    [orgId, exchangeId, over.userId ?? null, over.personaId ?? null, over.model ?? 'gpt-4o-mini', over.status ?? 'completed'],
  );
  return rows[0].id;
}

describe('daily usage kept as rows are written (usage_daily)', () => {
  it('mirrors the stored rows through every kind of write: recorder batches, updates, moves, analyses, deletions, merges', async () => {
    const orgId = await organization();
    const [alice, bob] = [await user(orgId, 'alice'), await user(orgId, 'bob "the" builder')];
    const persona = randomUUID();
    const of = (u: { id: string; externalId: string }) => ({ userId: u.id, externalUserId: u.externalId });
    const row = (tag: string, over = {}) => pendingRow(tag, { organizationId: orgId, ...of(alice), personaId: persona, personaVersion: 1, ...over });

    // the recorder: a pending row and its completion, a row written whole, a failure, a call still running, a model learnt late
    const a = row('a');
    await bench.recorder.begin(a);
    expect(await kept(orgId)).toEqual(await counted(orgId));
    await bench.recorder.complete(outcomeOf(a));
    const whole = row('whole', { ...of(bob), personaId: null, personaVersion: null });
    const held = bench.recorder.begin(whole, 60_000);
    await bench.recorder.complete(outcomeOf(whole, { cost: 0.25 }));
    await held;
    const failed = row('failed');
    await bench.recorder.begin(failed);
    await bench.recorder.complete(outcomeOf(failed, { status: 'upstream_error', usage: null, cost: null }));
    await bench.recorder.begin(row('running'));
    const late = row('late', { model: null });
    await bench.recorder.begin(late);
    await bench.recorder.complete(outcomeOf(late, { late: { model: 'gpt-4o' } }));
    const afterRecorder = await counted(orgId);
    // two users, two models, the persona and none
    expect(afterRecorder).toHaveLength(6);
    expect(await kept(orgId)).toEqual(afterRecorder);

    // an update of bodies alone (retention clearing them) appends nothing
    const before = await changesOf(orgId);
    await database.dataSource.query(`UPDATE exchanges SET output_text = NULL, response_body = NULL WHERE organization_id = $1`, [orgId]);
    expect(await changesOf(orgId)).toBe(before);

    // a row moved to another day and partition, a status swept to interrupted
    await database.dataSource.query(`UPDATE exchanges SET created_at = created_at - interval '40 days' WHERE id = $1`, [a.id]);
    await database.dataSource.query(`UPDATE exchanges SET status = 'interrupted' WHERE organization_id = $1 AND status = 'pending'`, [orgId]);
    expect(await kept(orgId)).toEqual(await counted(orgId));

    // analyses: added, failed, moved to no user (erasure of their author), deleted
    const r1 = await analysis(orgId, a.id, { userId: alice.id, personaId: persona });
    await analysis(orgId, whole.id, { userId: bob.id, status: 'failed', model: 'gpt-4o' });
    await database.dataSource.query(`UPDATE analysis_results SET user_id = NULL WHERE id = $1`, [r1]);
    const r3 = await analysis(orgId, late.id, { userId: alice.id });
    await database.dataSource.query(`DELETE FROM analysis_results WHERE id = $1`, [r3]);
    expect(await kept(orgId)).toEqual(await counted(orgId));

    // exchanges deleted (as retention and erasure delete them)
    await database.dataSource.query(`DELETE FROM exchanges WHERE id = $1`, [failed.id]);
    const beforeMerge = await counted(orgId);
    expect(await kept(orgId)).toEqual(beforeMerge);

    // the merge folds the changes into one row per key and changes no figure
    await repo.mergeAll();
    expect(await changesOf(orgId)).toBe(0);
    expect(await kept(orgId)).toEqual(beforeMerge);
    const perKey = await database.dataSource.query(
      `SELECT count(*)::int AS n, count(DISTINCT (dimension, day, source, key))::int AS keys FROM usage_daily WHERE organization_id = $1`,
      [orgId],
    );
    expect(perKey[0].n).toBe(perKey[0].keys);

    // every row of a key deleted: its merged row goes with it
    await database.dataSource.query(`DELETE FROM exchanges WHERE organization_id = $1 AND user_id = $2`, [orgId, bob.id]);
    await database.dataSource.query(`DELETE FROM analysis_results WHERE organization_id = $1 AND user_id = $2`, [orgId, bob.id]);
    await repo.mergeAll();
    expect(await kept(orgId)).toEqual(await counted(orgId));
    const bobRows = await database.dataSource.query(`SELECT count(*)::int AS n FROM usage_daily WHERE organization_id = $1 AND key = $2`, [
      orgId,
      bob.externalId,
    ]);
    expect(bobRows[0].n).toBe(0);
  });

  it('appends one aggregated change per (day, user, model, persona) for a whole statement, not one per row', async () => {
    const orgId = await organization();
    const one = randomUUID();
    const rows = Array.from({ length: 5 }, (_, i) => pendingRow(`batch${i}`, { organizationId: orgId, userId: one }));
    for (const r of rows) await bench.recorder.begin(r);
    await repo.mergeAll();
    // their open calls closed and written whole in one statement, as a batch of completions is
    await database.dataSource.query(
      `WITH d AS (DELETE FROM open_calls WHERE id = ANY($1::text[]) RETURNING *)
       INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, created_at, status, input_tokens, output_tokens, total_tokens, cost)
       SELECT id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, created_at, 'completed', 3, 4, 7, 0.001 FROM d`,
      [rows.map((r) => r.id)],
    );
    expect(await database.dataSource.query(`SELECT count(*)::int AS n FROM exchanges WHERE id = ANY($1::text[])`, [rows.map((r) => r.id)])).toEqual([{ n: 5 }]);
    // five rows of one user, model and (absent) persona on one day: one change
    expect(await changesOf(orgId)).toBe(1);
    expect(await kept(orgId)).toEqual(await counted(orgId));
  });

  it("an erased user's keys leave the daily usage; the organization's other figures stay", async () => {
    const orgId = await organization();
    const [gone, stays] = [await user(orgId, 'gone'), await user(orgId, 'stays')];
    const a = pendingRow('erased', { organizationId: orgId, userId: gone.id, externalUserId: gone.externalId });
    const b = pendingRow('stays', { organizationId: orgId, userId: stays.id, externalUserId: stays.externalId });
    for (const r of [a, b]) {
      await bench.recorder.begin(r);
      await bench.recorder.complete(outcomeOf(r));
    }
    await analysis(orgId, b.id, { userId: gone.id });
    await repo.mergeAll();
    await database.dataSource.transaction(async (m) => {
      await m.query(`DELETE FROM exchanges WHERE organization_id = $1 AND user_id = $2`, [orgId, gone.id]);
      await m.query(`UPDATE analysis_results SET user_id = NULL WHERE organization_id = $1 AND user_id = $2`, [orgId, gone.id]);
      // as the erasure does: the user goes before their daily usage is forgotten
      await m.query(`DELETE FROM users WHERE id = $1`, [gone.id]);
      await repo.forgetUser(m, orgId, gone.externalId);
    });
    const named = await database.dataSource.query(
      `SELECT count(*)::int AS n FROM (SELECT key FROM usage_daily UNION ALL SELECT external_user_id FROM usage_daily_changes) d WHERE key = $1`,
      [gone.externalId],
    );
    expect(named[0].n).toBe(0);
    expect(await kept(orgId)).toEqual(await counted(orgId));
  });

  it('reads of whole days and lookups of analyses by response use their indexes', async () => {
    // an organization with many results, and statistics that know it: on a near-empty table any index is as good
    const orgId = await organization();
    await database.dataSource.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, cache_key, analysis_type, model, response_id, created_at)
       SELECT $1, 'ex_' || i, 'key_' || i, 'intent', 'gpt-4o-mini', 'resp_' || i, now() - make_interval(secs => i)
         FROM generate_series(1, 5000) i`,
      [orgId],
    );
    await database.dataSource.query('ANALYZE analysis_results');
    await database.dataSource.transaction(async (m) => {
      await m.query(`SET LOCAL enable_seqscan = off`);
      const plan = async (sql: string, params: unknown[]) => (await m.query(`EXPLAIN ${sql}`, params)).map((r: Record<string, string>) => Object.values(r)[0]).join('\n');
      expect(
        await plan(`SELECT * FROM usage_daily WHERE organization_id = $1 AND dimension = 'model' AND day >= $2::date AND day < $3::date`, [
          randomUUID(),
          '2026-01-01',
          '2026-04-01',
        ]),
      ).toContain('uq_usage_daily_key');
      expect(
        await plan(`SELECT * FROM analysis_results WHERE organization_id = $1 AND response_id = $2 AND status = 'completed' ORDER BY created_at DESC LIMIT 21`, [
          orgId,
          'resp_2500',
        ]),
      ).toContain('ix_analysis_results_response');
    });
  });
});
