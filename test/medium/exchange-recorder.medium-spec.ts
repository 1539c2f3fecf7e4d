import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediumDatabase, openMediumDatabase, outcomeOf, pendingRow, RecorderBench, storedRow } from './recorder-harness';

/** A connection of the recorder's own pool for pending rows: the one its next statement will use. */
async function withRecorderConnection(bench: RecorderBench, sql: string): Promise<void> {
  const pool = (bench.recorder as any).presence.pool(false, true);
  const client = await pool.connect();
  try {
    await client.query(sql);
  } finally {
    client.release();
  }
}


let database: MediumDatabase;
beforeAll(async () => {
  database = await openMediumDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe('exchange recorder on a real database: merge, lost rows, refused values', () => {
  let bench: RecorderBench;
  beforeAll(() => {
    bench = database.recorder();
  });
  afterAll(async () => {
    await bench?.close();
  });

  it('a call that ends while its pending row is held is written once, whole', async () => {
    const row = pendingRow('held');
    const written = bench.recorder.begin(row, 60_000);
    const before = bench.statements.length;
    await bench.recorder.complete(outcomeOf(row));
    await written;
    const sent = bench.statements.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0].text).toMatch(/^INSERT INTO exchanges/);
    expect(sent[0].text).not.toMatch(/UPDATE/);
    const stored = await storedRow(bench.dataSource, row.id);
    expect(stored).toMatchObject({ status: 'completed', output_text: 'out', total_tokens: 7 });
  });

  it('a completion that finds its open call still queued joins it: one INSERT; one already sent is deleted and the exchange written whole', async () => {
    const queued = pendingRow('queued');
    const before = bench.statements.length;
    const written = bench.recorder.begin(queued);
    const completed = bench.recorder.complete(outcomeOf(queued));
    await Promise.all([written, completed]);
    expect(bench.statements.slice(before).map((s) => s.text.slice(0, 22))).toEqual(['INSERT INTO exchanges ']);
    expect(await storedRow(bench.dataSource, queued.id)).toMatchObject({ status: 'completed', open: false });

    const sent = pendingRow('sent');
    const mid = bench.statements.length;
    await bench.recorder.begin(sent);
    // while the call runs its record is an open call, not a row of exchanges
    expect(await storedRow(bench.dataSource, sent.id)).toMatchObject({ status: 'pending', open: true });
    await bench.recorder.complete(outcomeOf(sent));
    const [open, completion] = bench.statements.slice(mid).map((s) => s.text);
    expect(open).toMatch(/^INSERT INTO open_calls /);
    // the completion deletes the open call and writes the exchange whole: exchanges never takes an UPDATE
    expect(completion).toMatch(/DELETE FROM open_calls[\s\S]*INSERT INTO exchanges/);
    expect(completion).not.toMatch(/UPDATE/);
    expect(await storedRow(bench.dataSource, sent.id)).toMatchObject({ status: 'completed', total_tokens: 7, open: false });
  });

  it("a completion writes the exchange with its open call's columns and the time it began", async () => {
    // a call begun last month (a long realtime session, say): its exchange goes to last month's partition
    const row = pendingRow('pruned', { createdAt: new Date(Date.now() - 32 * 86_400_000), sessionId: 'sess-kept', model: 'gpt-early' });
    await bench.recorder.begin(row);
    // the outcome learned the model late (a multipart upload's field): it replaces the open call's
    await bench.recorder.complete({ ...outcomeOf(row), late: { model: 'gpt-late' } });
    const stored = await bench.dataSource.query(
      `SELECT session_id, model, created_at, status FROM exchanges WHERE id = $1`,
      [row.id],
    );
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ session_id: 'sess-kept', model: 'gpt-late', status: 'completed' });
    expect(new Date(stored[0].created_at).getTime()).toBe(row.createdAt.getTime());
    expect(await bench.dataSource.query(`SELECT 1 FROM open_calls WHERE id = $1`, [row.id])).toHaveLength(0);
  });

  it('an open call the database lost is written whole with its outcome, idempotently', async () => {
    const row = pendingRow('lost');
    await bench.recorder.begin(row);
    // an asynchronous commit lost in a database crash (which takes the connections with it)
    await bench.dataSource.query(`DELETE FROM open_calls WHERE id = $1`, [row.id]);
    (bench.recorder as any).connectionLost();
    const before = bench.statements.length;
    await bench.recorder.complete(outcomeOf(row));
    expect(await storedRow(bench.dataSource, row.id)).toMatchObject({ status: 'completed', output_text: 'out' });
    expect(bench.logs.some((l) => l.includes('lost by the database') && l.includes(row.id))).toBe(true);
    expect(bench.statements.slice(before).some((s) => /^INSERT[\s\S]*ON CONFLICT \(id, created_at\) DO UPDATE/.test(s.text))).toBe(true);
    expect(bench.recorder.keptForLater).toBe(0);
  });

  it('an open call deleted while its call runs, no connection lost (its user erased): the outcome is not written', async () => {
    const row = pendingRow('erased');
    await bench.recorder.begin(row);
    await bench.dataSource.query(`DELETE FROM open_calls WHERE id = $1`, [row.id]);
    await bench.recorder.complete(outcomeOf(row));
    expect(await storedRow(bench.dataSource, row.id)).toBeUndefined();
    expect(bench.logs.some((l) => l.includes('its outcome is not recorded') && l.includes(row.id))).toBe(true);
    // nothing of it is kept in memory
    expect((bench.recorder as any).pendingRows.has(row.id)).toBe(false);
    expect(bench.recorder.keptForLater).toBe(0);
  });

  it('a row written again meets its earlier attempt: no duplicate, a pending or interrupted one takes the outcome', async () => {
    const row = pendingRow('again');
    await bench.recorder.begin(row);
    // the earlier attempt committed after all: writing the open call again changes nothing
    await bench.recorder.begin(row, 0, true);
    expect(await storedRow(bench.dataSource, row.id)).toMatchObject({ status: 'pending', open: true });
    // a sweep recorded it interrupted before the outcome could be written: the row written whole takes the outcome
    await bench.dataSource.query(
      `WITH d AS (DELETE FROM open_calls WHERE id = $1 RETURNING *)
       INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, stream, created_at, status)
       SELECT id, organization_id, user_id, external_user_id, session_id, endpoint, stream, created_at, 'interrupted' FROM d`,
      [row.id],
    );
    const written = bench.recorder.begin(row, 60_000, true);
    await bench.recorder.complete(outcomeOf(row));
    await written;
    expect(await storedRow(bench.dataSource, row.id)).toMatchObject({ status: 'completed', output_text: 'out', total_tokens: 7 });
    const count = await bench.dataSource.query(`SELECT count(*)::int AS n FROM exchanges WHERE id = $1`, [row.id]);
    expect(count[0].n).toBe(1);
    expect(bench.logs.some((l) => /duplicate key/.test(l))).toBe(false);
  });

  it('a body PostgreSQL refuses as jsonb is stored as its text; one refused as text too is stored without bodies', async () => {
    // a number beyond numeric's range: valid JSON, refused by jsonb (22003)
    const huge = '{"n": 1e1000000}';
    const row = pendingRow('huge');
    await bench.recorder.begin(row);
    await bench.recorder.complete(outcomeOf(row, { responseBody: huge }));
    const stored = await storedRow(bench.dataSource, row.id);
    expect(stored).toMatchObject({ status: 'completed', output_text: 'out', response_body: huge });
    expect(bench.logs.some((l) => l.includes('stored as text') && l.includes(row.id))).toBe(true);

    // the database refuses any body of these rows (a data exception from a check it makes): the row is kept without
    await bench.dataSource.query(`CREATE OR REPLACE FUNCTION medium_refuse_bodies() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.id LIKE 'req_medium_refused_%' AND NEW.response_body IS NOT NULL THEN
          RAISE EXCEPTION 'body refused' USING ERRCODE = '22023';
        END IF;
        RETURN NEW;
      END $$`);
    await bench.dataSource.query(`CREATE TRIGGER medium_refuse_bodies BEFORE INSERT OR UPDATE ON exchanges FOR EACH ROW EXECUTE FUNCTION medium_refuse_bodies()`);
    try {
      const refused = pendingRow('refused');
      await bench.recorder.begin(refused);
      await bench.recorder.complete(outcomeOf(refused));
      expect(await storedRow(bench.dataSource, refused.id)).toMatchObject({ status: 'completed', output_text: 'out', total_tokens: 7, response_body: null });
      expect(bench.logs.some((l) => l.includes('stored without them') && l.includes(refused.id))).toBe(true);
    } finally {
      await bench.dataSource.query(`DROP TRIGGER IF EXISTS medium_refuse_bodies ON exchanges`);
      await bench.dataSource.query(`DROP FUNCTION IF EXISTS medium_refuse_bodies()`);
    }
  });
});

describe('exchange recorder on its own pools: prepared statements, and the fallback when the connection does not keep them', () => {
  it('a statement name the server session already has (42P05): written unprepared from then on', async () => {
    const bench = database.recorder({ ownPools: true });
    try {
      // a session that already holds the name (a pooler in transaction mode, a shared embedded session)
      await withRecorderConnection(bench, `PREPARE records_1_0_0 AS SELECT 1`);
      const row = pendingRow('p42p05');
      await bench.recorder.begin(row);
      expect(await storedRow(bench.dataSource, row.id)).toMatchObject({ status: 'pending' });
      expect(bench.logs.some((l) => l.includes('prepared statements unavailable') && l.includes('42P05'))).toBe(true);
      const next = pendingRow('p42p05_next');
      const before = bench.statements.length;
      await bench.recorder.begin(next);
      await bench.recorder.complete(outcomeOf(next));
      expect(bench.statements.slice(before).every((s) => s.name === undefined)).toBe(true);
      expect(await storedRow(bench.dataSource, next.id)).toMatchObject({ status: 'completed' });
    } finally {
      // the embedded database's connections share one session: no name is left for the next recorder to meet
      await withRecorderConnection(bench, `DEALLOCATE ALL`);
      await bench.close();
    }
  });

  // the embedded database takes no startup options
  it.skipIf(!process.env.DATABASE_URL)("the recorder's own connections run the batches on their generic plan: a completion is not planned again at each run, and finds its open call by its key", async () => {
    const bench = database.recorder({ ownPools: true });
    try {
      for (let i = 0; i < 8; i++) {
        const row = pendingRow(`generic_${i}`);
        await bench.recorder.begin(row);
        await bench.recorder.complete(outcomeOf(row));
      }
      expect(bench.statements.at(-1)?.name).toBe('records_0_0_1');
      const pool = (bench.recorder as any).presence.pool(true, true);
      const client = await pool.connect();
      try {
        expect((await client.query(`SHOW plan_cache_mode`)).rows[0].plan_cache_mode).toBe('force_generic_plan');
        // a generic plan made while open_calls held a few rows would read the whole table (a hash join) for as long
        // as the connection lives, while the deletes' dead rows make it grow until vacuum
        expect((await client.query(`SHOW enable_seqscan`)).rows[0].enable_seqscan).toBe('off');
        await client.query(`PREPARE completion_probe AS DELETE FROM open_calls o USING (SELECT * FROM (VALUES ($1::text), ($2::text), ($3::text), ($4::text)) v(id)) v WHERE o.id = v.id`);
        const plan = (await client.query(`EXPLAIN EXECUTE completion_probe('a', 'b', 'c', 'd')`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        await client.query(`DEALLOCATE completion_probe`);
        expect(plan).toMatch(/Index Scan using open_calls_pkey/);
        expect(plan).not.toMatch(/Seq Scan on open_calls/);
        // every connection of the pool that ran the completion ran it without planning it again
        const plans = (await client.query(`SELECT generic_plans::int AS g, custom_plans::int AS c FROM pg_prepared_statements WHERE name = 'records_0_0_1'`)).rows;
        for (const p of plans) expect(p.c).toBe(0);
      } finally {
        client.release();
      }
    } finally {
      await withRecorderConnection(bench, `DEALLOCATE ALL`);
      await bench.close();
    }
  });

  it('a prepared statement the session lost (26000): written unprepared from then on', async () => {
    const bench = database.recorder({ ownPools: true });
    try {
      const first = pendingRow('p26000_first');
      await bench.recorder.begin(first);
      expect(bench.statements.at(-1)?.name).toBe('records_1_0_0');
      // the server session forgot it (a pooler handed the connection's session to another client)
      await withRecorderConnection(bench, `DEALLOCATE ALL`);
      const row = pendingRow('p26000');
      await bench.recorder.begin(row);
      expect(await storedRow(bench.dataSource, row.id)).toMatchObject({ status: 'pending' });
      expect(bench.logs.some((l) => l.includes('prepared statements unavailable') && l.includes('26000'))).toBe(true);
      expect(bench.statements.at(-1)?.name).toBeUndefined();
    } finally {
      // the embedded database's connections share one session: no name is left for the next recorder to meet
      await withRecorderConnection(bench, `DEALLOCATE ALL`);
      await bench.close();
    }
  });
});

describe('exchange recorder stopping: every call it opened a record for ends with a final status', () => {
  it('waits for running calls to give their outcome; one that does not is recorded as interrupted', async () => {
    const bench = database.recorder();
    // a call whose client left before the signal: it ends a moment after the stop began (the HTTP drain did not
    // wait for it, its socket being closed)
    const late = pendingRow('late', { stream: true });
    const lateHandle = await bench.recorder.open(late);
    await lateHandle.pendingRow();
    // a call whose record is held (not yet written), and one that never ends
    const held = pendingRow('held-stop');
    const heldHandle = await bench.recorder.open(held);
    const stuck = pendingRow('stuck', { stream: true });
    await (await bench.recorder.open(stuck)).pendingRow();

    const stopping = bench.recorder.beforeApplicationShutdown();
    setTimeout(() => void lateHandle.finish(outcomeOf(late, { status: 'client_aborted' })), 100);
    setTimeout(() => void heldHandle.finish(outcomeOf(held, { status: 'client_aborted' })), 150);
    await stopping;
    await bench.close();

    expect(await storedRow(bench.dataSource, late.id)).toMatchObject({ status: 'client_aborted' });
    expect(await storedRow(bench.dataSource, held.id)).toMatchObject({ status: 'client_aborted' });
    expect(await storedRow(bench.dataSource, stuck.id)).toMatchObject({ status: 'interrupted', error: { code: 'interrupted' } });
    expect(bench.logs.some((l) => l.includes('calls still running recorded as interrupted'))).toBe(true);
  });
});
