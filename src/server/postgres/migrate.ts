/**
 * Schema migrations: the SQL files in ./migrations (shipped in the package), applied in
 * file-name order, each in its own transaction together with its row in schema_migrations.
 * A session-level advisory lock serialises gateways and sinks that start at the same time:
 * the first applies what is missing, the others wait and then find nothing to do.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from 'pg';

/** pg_advisory_lock key: "NGTT" in ASCII, so other applications' locks do not collide by accident. */
export const MIGRATION_LOCK_KEY = 0x4e475454;

/** ./migrations next to this module (source, tsx) or in the package's src/ (when run from dist/). */
export function migrationsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'migrations'), join(here, '..', '..', '..', '..', 'src', 'server', 'postgres', 'migrations')];
  const found = candidates.find((dir) => existsSync(dir));
  if (!found) throw new Error(`NGTT's PostgreSQL migrations not found (looked in ${candidates.join(', ')})`);
  return found;
}

export interface Migration {
  version: string;
  sql: string;
}

export async function readMigrations(dir = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(files.map(async (f) => ({ version: f.replace(/\.sql$/, ''), sql: await readFile(join(dir, f), 'utf8') })));
}

/** Applies the missing migrations; resolves to the versions it applied (empty when up to date). */
export async function migrate(pool: Pool, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await readMigrations());
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Set((await client.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      for (const m of all) {
        if (done.has(m.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [m.version]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new Error(`migration ${m.version} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.version);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    }
  } finally {
    client.release();
  }
  return applied;
}
