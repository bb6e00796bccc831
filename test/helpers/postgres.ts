/**
 * Shared set-up for the PostgreSQL tests: a fresh database per test file (created from the
 * `test` database, dropped when the file ends, also when it fails), or a clear skip when no
 * PostgreSQL can be reached (start it with .ci/services).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The maintenance connection; NGTT_TEST_PG_URL overrides it (trust auth on the dev machines). */
export const PG_ADMIN_URL = process.env.NGTT_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const PG_SKIP_REASON = `PostgreSQL not reachable at ${new URL(PG_ADMIN_URL).host} (start it, e.g. .ci/services); skipping`;

interface Tap {
  teardown(fn: () => unknown): void;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

export async function postgresReachable(): Promise<boolean> {
  try {
    await admin((c) => c.query('SELECT 1'));
    return true;
  } catch {
    return false;
  }
}

/** Creates `ngtt_test_<pid>_<random>`; resolves to its URL. Dropped at the test's teardown. */
export async function testDatabase(t: Tap): Promise<string> {
  const name = `ngtt_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  t.teardown(() => dropDatabase(name));
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(name: string): Promise<void> {
  // WITH (FORCE) ends sessions a killed child process may have left behind.
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/** One query against the test database (counting rows, checking the schema). */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * A real outage of one test database (others untouched): `false` stops it accepting connections
 * and ends every session on it; `true` lets clients in again.
 */
export async function setDatabaseReachable(url: string, reachable: boolean): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  await query(PG_ADMIN_URL, `ALTER DATABASE ${name} ALLOW_CONNECTIONS ${reachable}`);
  // A connection that was starting up as ALLOW_CONNECTIONS changed can still appear: end those too.
  while (!reachable) {
    const ended = await query(PG_ADMIN_URL, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [name]);
    if (ended.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}
