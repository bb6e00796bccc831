/** PostgreSQL specifics: migrations under concurrency, exactly-once ingest, a schema to query, availability. */
import pg from 'pg';
import t from 'tap';
import { encode } from '../../../src/minijson/index.js';
import { migrate, openPostgresStore, readMigrations } from '../../../src/server/postgres/index.js';
import { PG_SKIP_REASON, postgresReachable, query, setDatabaseReachable, testDatabase } from '../../helpers/postgres.js';

if (!(await postgresReachable())) {
  t.plan(0, PG_SKIP_REASON);
} else {
  t.test('migrations: several processes starting at once apply each one exactly once', async (t) => {
    const url = await testDatabase(t);
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: url, max: 2 }));
    // Ended here, before testDatabase's teardown drops the database WITH (FORCE): that would end
    // their idle connections under them, and a pool throws an unhandled 'error' for each.
    const ended = () => Promise.all(pools.map((p) => (p.ended ? undefined : p.end())));
    t.teardown(ended);
    const applied = await Promise.all(pools.map((p) => migrate(p)));
    const all = (await readMigrations()).map((m) => m.version);
    t.ok(all.length >= 1);
    t.same(applied.flat().sort(), all, 'every migration applied by exactly one of them');
    t.same((await query(url, 'SELECT version FROM schema_migrations ORDER BY version')).map((r) => r.version), all);
    t.same(await migrate(pools[0]), [], 'nothing to do the next time');
    await ended();
  });

  t.test('ingest is exactly once: a batch or log batch sent again is not stored twice', async (t) => {
    const url = await testDatabase(t);
    const store = await openPostgresStore({ url });
    t.teardown(() => store.close());
    const series = [{ path: 'W1', values: [[1_700_000_000_000, 21.5], [1_700_000_001_000, 22]] as [number, number][] }];
    const logs = [{ service: 'boiler', when: 1_700_000_000_123_456, message: 'lit', level: 20 }];
    await store.ingest('dev', { data: [{ series, encoded: encode(series) }], logs: [logs] });
    // The confirm was lost: the device sends the same batch again (also on another connection, concurrently).
    await Promise.all([
      store.ingest('dev', { data: [{ series, encoded: encode(series) }], logs: [logs] }),
      store.ingest('dev', { data: [{ series }], logs: [logs] }),
    ]);
    const counts = await query(url, `SELECT (SELECT count(*) FROM data)::int AS data, (SELECT count(*) FROM data_batches)::int AS batches, (SELECT count(*) FROM logs)::int AS logs`);
    t.same(counts, [{ data: 2, batches: 1, logs: 1 }]);
    // Another device's identical batch is its own.
    await store.ingest('dev2', { data: [{ series }] });
    t.equal((await query(url, 'SELECT count(*)::int AS n FROM data'))[0].n, 4);

    // The schema answers the obvious questions directly.
    const rows = await query(url, `SELECT path, ngtt_ms(ts) AS ms, value FROM data WHERE device_id = 'dev' AND path = 'W1' AND ts >= to_timestamp(1700000000.5) ORDER BY ts`);
    t.same(rows, [{ path: 'W1', ms: 1_700_000_001_000, value: 22 }]);
    const log = await query(url, `SELECT service, (extract(epoch FROM ts) * 1000000)::bigint::text AS us, message FROM logs WHERE device_id = 'dev'`);
    t.same(log, [{ service: 'boiler', us: '1700000000123456', message: 'lit' }], 'log times keep their microseconds');
    t.same((await store.readLogs('dev')).map(({ receivedAt, ...r }) => r), logs);
    const plan = (await query(url, `EXPLAIN SELECT * FROM data WHERE device_id = 'dev' AND path = 'W1' AND ts > now() - interval '1 day'`)).map((r) => r['QUERY PLAN']).join('\n');
    t.match(plan, /data_device_path_ts/, 'data by device, path and time uses the index');
  });

  t.test('a failed batch leaves nothing behind (same transaction as its key)', async (t) => {
    const url = await testDatabase(t);
    const store = await openPostgresStore({ url });
    t.teardown(() => store.close());
    // A time PostgreSQL cannot hold fails the insert of the values after the batch key was inserted.
    const bad = [{ path: 'W1', values: [[1e20, 1]] as [number, number][] }];
    await t.rejects(store.ingest('dev', { data: [{ series: bad }] }));
    t.same(await query(url, `SELECT count(*)::int AS n FROM data_batches`), [{ n: 0 }], 'the batch key rolled back with it');
  });

  t.test('availability follows the database link', async (t) => {
    const url = await testDatabase(t);
    const store = await openPostgresStore({ url, healthIntervalMs: 50 });
    t.teardown(() => store.close());
    t.equal(store.available(), true);
    const changes: boolean[] = [];
    store.onAvailabilityChange((ok) => changes.push(ok));
    await setDatabaseReachable(url, false);
    await waitUntil(() => !store.available(), 'unavailable');
    await setDatabaseReachable(url, true);
    await waitUntil(() => store.available(), 'available again');
    t.same(changes, [false, true]);
    t.same(await store.listBaobs('dev'), [], 'queries work again');
  });
}

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
