/**
 * Receipts of message orders still to be told to the server (`POST
 * /v1/device/orders/message/<uuid>`, spec §6), durable in the device database: a receipt is
 * stored before it is sent and removed once the server answered it, so one the device could not
 * deliver before it closed goes out after the next start.
 */
import type { DeviceDatabase } from './database.js';
import type { SharedDatabase } from './shared-database.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS message_receipts (
  uuid TEXT PRIMARY KEY,
  received_at INTEGER NOT NULL
);`;

export class SqliteMessageReceipts {
  private readonly statements;

  /** `db`: the device database, shared with the spool (not closed here). */
  constructor(db: SharedDatabase) {
    const d = db as DeviceDatabase;
    d.exec(SCHEMA);
    this.statements = {
      add: d.prepare<[string, number]>('INSERT OR IGNORE INTO message_receipts (uuid, received_at) VALUES (?, ?)'),
      remove: d.prepare<[string]>('DELETE FROM message_receipts WHERE uuid = ?'),
      pending: d.prepare<[], { uuid: string }>('SELECT uuid FROM message_receipts ORDER BY received_at, uuid'),
    };
  }

  /** Committed before it returns. */
  add(uuid: string, now = Date.now()): void {
    this.statements.add.run(uuid, now);
  }

  remove(uuid: string): void {
    this.statements.remove.run(uuid);
  }

  /** Oldest first. */
  pending(): string[] {
    return this.statements.pending.all().map((r) => r.uuid);
  }
}
