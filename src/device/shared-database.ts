/**
 * "An open better-sqlite3 database", as the public API names it: the spool and the
 * executed-orders store can share one file (NgttDevice opens it with openDeviceDatabase).
 * Structural, so that the package's type declarations need no @types/better-sqlite3; any
 * better-sqlite3 `Database` fits.
 */
export interface SharedDatabase {
  readonly name: string;
  readonly open: boolean;
  readonly inTransaction: boolean;
  close(): unknown;
}
