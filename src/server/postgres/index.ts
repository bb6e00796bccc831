/**
 * `ngtt/server/postgres`: the server's Store in PostgreSQL (`openPostgresStore`, what `ngtt server
 * --store postgres` and `--store rabbitmq --pg-url` run) and its migrations (docs/postgres.md).
 * Needs the optional peer dependency `pg`.
 */
export * from './store.js';
export { migrate, migrationsDir, readMigrations, MIGRATION_LOCK_KEY, type Migration } from './migrate.js';
