/**
 * PostgresStore ingest: what one PostgreSQL takes from the sinks (issue #16 scale note).
 *
 *   npx tsx bench/postgres-ingest.ts        (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/test)
 *
 * Creates a scratch database, then `BENCH_WRITERS` concurrent writers (like sink callbacks)
 * each ingest distinct data batches (BENCH_VALUES values per batch, over 4 pathpoints, distinct
 * timestamps and values) until BENCH_BATCHES are stored; one LOGS batch of 5 records per 10 data
 * batches. Prints batches/s, values/s and the bytes on disk per stored value (tables + indexes),
 * and writes bench/results/postgres-ingest.json. Drops the database at the end.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { openPostgresStore } from '../src/server/postgres/index.js';
import type { PathpointSeries } from '../src/protocol/index.js';

const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const writers = Number(process.env.BENCH_WRITERS ?? 16);
const total = Number(process.env.BENCH_BATCHES ?? 20_000);
const valuesPerBatch = Number(process.env.BENCH_VALUES ?? 20);
const devices = 1000;

const name = `ngtt_bench_${process.pid}`;
const admin = async (sql: string) => {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
};
await admin(`CREATE DATABASE ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const store = await openPostgresStore({ url: url.toString(), maxConnections: writers });
try {
  const batch = (n: number): PathpointSeries[] =>
    Array.from({ length: 4 }, (_, p) => ({
      path: `W${p}`,
      values: Array.from({ length: valuesPerBatch / 4 }, (_, v) => [1_700_000_000_000 + n * 60_000 + v * 1000, n * 100 + p * 10 + v + 0.25] as [number, number]),
    }));
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let n = next++; n < total; n = next++) {
        const deviceId = `dev-${n % devices}`;
        const logs = n % 10 === 0 ? [Array.from({ length: 5 }, (_, i) => ({ service: 'bench', when: 1_700_000_000_000_000 + n * 10 + i, message: `record ${n}/${i}`, level: 20 }))] : [];
        await store.ingest(deviceId, { data: [{ series: batch(n) }], logs });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sizes = await store.pool.query<{ data: string; batches: string; logs: string; rows: string }>(
    `SELECT pg_total_relation_size('data') AS data, pg_total_relation_size('data_batches') AS batches,
            pg_total_relation_size('logs') + pg_total_relation_size('log_batches') AS logs, (SELECT count(*) FROM data) AS rows`,
  );
  const s = sizes.rows[0];
  const result = {
    date: new Date().toISOString(),
    postgres: (await store.pool.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0].v,
    node: process.version,
    writers,
    batches: total,
    valuesPerBatch,
    seconds: Math.round(seconds * 100) / 100,
    batchesPerSecond: Math.round(total / seconds),
    valuesPerSecond: Math.round((total * valuesPerBatch) / seconds),
    storedValues: Number(s.rows),
    bytesPerValue: Math.round((Number(s.data) + Number(s.batches)) / Number(s.rows)),
    logBytes: Number(s.logs),
  };
  console.log(JSON.stringify(result, null, 2));
  await writeFile(join(import.meta.dirname, 'results', 'postgres-ingest.json'), JSON.stringify(result, null, 2) + '\n');
} finally {
  await store.close();
  await admin(`DROP DATABASE ${name} WITH (FORCE)`);
}
