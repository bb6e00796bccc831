/**
 * The default durable Store: one SQLite file (better-sqlite3) in WAL mode.
 *
 * Durability: every write is a transaction that has committed before the promise resolves, so
 * the server only sends DATA_STREAM_CONFIRM or records a settled order after the commit.
 * In WAL mode a committed transaction has been written to the WAL with write(2) before commit
 * returns, so it survives a kill of the process with either setting; `synchronous = FULL`
 * (the default here) also fsyncs the WAL at each commit, so it survives a power cut or OS crash
 * too: a device deletes confirmed data, so CONFIRM must mean "on disk". Uploads are batched
 * (many DATA_STREAMs per transaction), which keeps the fsync cost per batch, not per frame.
 * `synchronous: 'NORMAL'` trades the power-cut guarantee for speed.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { encode } from '../../minijson/index.js';
import type { PathpointDeclaration, Section } from '../../protocol/index.js';
import { checkedDedupeWindow, LocalStore, orderFromRow, type OrderRow, type Tables, type UploadRow } from './local-store.js';
import type { Baob, BaobInfo, DeviceConfig, OrderRecord, OrderState, Settlement } from './types.js';

export interface SqliteStoreOptions {
  /** Default 'FULL' (see above). */
  synchronous?: 'FULL' | 'NORMAL';
  /** Data batches, and log batches, per device remembered to recognise a re-sent one. Default DEFAULT_DEDUPE_WINDOW. */
  dedupeWindow?: number;
}

/** Digests pruned once per this many inserts of a device (amortised; the table holds at most window + this per device). */
const PRUNE_EVERY = 64;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS orders (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  device_id TEXT NOT NULL,
  sections BLOB NOT NULL,
  state TEXT NOT NULL,
  enqueued_at INTEGER NOT NULL,
  settled_at INTEGER,
  reason TEXT,
  deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_by_device_state ON orders (device_id, state, seq);
-- Only the orders not settled yet: counting them (metrics) reads no settled history.
CREATE INDEX IF NOT EXISTS orders_open ON orders (state) WHERE state IN ('queued', 'in-flight');
CREATE TABLE IF NOT EXISTS data_batches (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS data_by_device ON data_batches (device_id, seq);
CREATE TABLE IF NOT EXISTS log_batches (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_device ON log_batches (device_id, seq);
CREATE TABLE IF NOT EXISTS devices (
  device_id TEXT PRIMARY KEY,
  config TEXT,
  pathpoints TEXT NOT NULL DEFAULT '[]'
);
-- POST /v1/device/orders/message/<uuid>: the device received that message order (first time kept).
CREATE TABLE IF NOT EXISTS message_receipts (
  device_id TEXT NOT NULL,
  uuid TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, uuid)
) WITHOUT ROWID;
-- BAOBs (spec §11); a deleted one stays as a tombstone (deleted = 1, no data) to keep its version.
CREATE TABLE IF NOT EXISTS baobs (
  device_id TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  size INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  data BLOB,
  PRIMARY KEY (device_id, key)
);
`;

const toRecord = orderFromRow;

/**
 * One digest table: the SHA-256 of each device's most recent batches of one kind (data, logs),
 * `seq` ordering them. A batch whose digest is there is a re-send (data: after a lost CONFIRM;
 * logs: an unacknowledged batch after a reconnect) and is not stored twice. Pruned to the dedupe
 * window, amortised over PRUNE_EVERY inserts of a device.
 */
class DigestWindow {
  private seq: number;
  /** Inserts per device since its digests were last pruned. */
  private readonly sincePrune = new Map<string, number>();
  private readonly insertDigest: Database.Statement<[string, Uint8Array, number]>;
  private readonly prune: Database.Statement<[{ deviceId: string; newer: number }]>;

  constructor(
    db: Database.Database,
    table: 'data_digests' | 'log_digests',
    private readonly window: number,
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
      device_id TEXT NOT NULL,
      digest BLOB NOT NULL,
      seq INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (device_id, digest)
    ) WITHOUT ROWID`);
    // Files from before the dedupe window have no seq: their digests count as the oldest.
    if (!(db.pragma(`table_info(${table})`) as { name: string }[]).some((c) => c.name === 'seq')) {
      db.exec(`ALTER TABLE ${table} ADD COLUMN seq INTEGER NOT NULL DEFAULT 0`);
    }
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_by_age ON ${table} (device_id, seq)`);
    this.seq = (db.prepare(`SELECT max(seq) AS seq FROM ${table}`).get() as { seq: number | null }).seq ?? 0;
    this.insertDigest = db.prepare(`INSERT OR IGNORE INTO ${table} (device_id, digest, seq) VALUES (?, ?, ?)`);
    this.prune = db.prepare(
      `DELETE FROM ${table} WHERE device_id = @deviceId AND seq < (SELECT seq FROM ${table} WHERE device_id = @deviceId ORDER BY seq DESC LIMIT 1 OFFSET @newer)`,
    );
  }

  /** Calls `insert` for each row not stored before (nor earlier in `rows`); run inside the transaction that inserts. */
  insertNew(deviceId: string, rows: UploadRow[], insert: (row: UploadRow) => void): void {
    let inserted = 0;
    for (const r of rows) {
      if (r.digest && this.insertDigest.run(deviceId, r.digest, ++this.seq).changes === 0) continue; // stored before
      insert(r);
      inserted++;
    }
    const since = (this.sincePrune.get(deviceId) ?? 0) + inserted;
    if (since >= PRUNE_EVERY) {
      this.prune.run({ deviceId, newer: this.window - 1 });
      this.sincePrune.delete(deviceId);
    } else if (since) {
      this.sincePrune.set(deviceId, since);
    }
  }
}

class SqliteTables implements Tables {
  private readonly db: Database.Database;
  private readonly stmt;
  readonly insertUploads: (deviceId: string, data: UploadRow[], logs: UploadRow[]) => void;
  readonly takeAllQueued: (deviceId: string, at: number) => OrderRecord[];
  readonly takeNextQueued: (deviceId: string) => OrderRecord | null;

  constructor(file: string, options: SqliteStoreOptions) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const dedupeWindow = checkedDedupeWindow(options.dedupeWindow);
    const dataDigests = new DigestWindow(this.db, 'data_digests', dedupeWindow);
    // Added after data_digests: a file from before it gets the table here, empty.
    const logDigests = new DigestWindow(this.db, 'log_digests', dedupeWindow);
    // No connection survives a restart: whatever was in flight goes back to the queue.
    this.db.prepare(`UPDATE orders SET state = 'queued' WHERE state = 'in-flight'`).run();
    const db = this.db;
    this.stmt = {
      insertOrder: db.prepare(
        `INSERT INTO orders (id, device_id, sections, state, enqueued_at, deliveries) VALUES (@id, @deviceId, @sections, 'queued', @enqueuedAt, 0)`,
      ),
      putOrder: db.prepare(
        `INSERT INTO orders (id, device_id, sections, state, enqueued_at, settled_at, reason, deliveries)
         VALUES (@id, @deviceId, @sections, @state, @enqueuedAt, @settledAt, @reason, @deliveries)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, enqueued_at = excluded.enqueued_at,
           settled_at = excluded.settled_at, reason = excluded.reason, deliveries = excluded.deliveries`,
      ),
      nextQueued: db.prepare<[string], OrderRow>(`SELECT * FROM orders WHERE device_id = ? AND state = 'queued' ORDER BY seq LIMIT 1`),
      markInFlight: db.prepare(`UPDATE orders SET state = 'in-flight', deliveries = deliveries + 1 WHERE id = ?`),
      settle: db.prepare(`UPDATE orders SET state = ?, reason = ?, settled_at = ? WHERE id = ? AND state = 'in-flight'`),
      requeue: db.prepare(`UPDATE orders SET state = 'queued' WHERE id = ? AND state = 'in-flight'`),
      allQueued: db.prepare<[string], OrderRow>(`SELECT * FROM orders WHERE device_id = ? AND state = 'queued' ORDER BY seq`),
      markDelivered: db.prepare(
        `UPDATE orders SET state = 'delivered', settled_at = ?, deliveries = deliveries + 1 WHERE device_id = ? AND state = 'queued'`,
      ),
      listAll: db.prepare<[string, number], OrderRow>(
        `SELECT * FROM (SELECT * FROM orders WHERE device_id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
      ),
      listState: db.prepare<[string, string, number], OrderRow>(
        `SELECT * FROM (SELECT * FROM orders WHERE device_id = ? AND state = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
      ),
      getOrder: db.prepare<[string], OrderRow>(`SELECT * FROM orders WHERE id = ?`),
      countOpen: db.prepare<[], { state: string; n: number }>(`SELECT state, count(*) AS n FROM orders WHERE state IN ('queued', 'in-flight') GROUP BY state`),
      insertData: db.prepare(`INSERT INTO data_batches (device_id, received_at, payload) VALUES (?, ?, ?)`),
      insertLogs: db.prepare(`INSERT INTO log_batches (device_id, received_at, payload) VALUES (?, ?, ?)`),
      dataRows: db.prepare<[string], { receivedAt: number; payload: Buffer }>(
        `SELECT received_at AS receivedAt, payload FROM data_batches WHERE device_id = ? ORDER BY seq DESC`,
      ),
      logRows: db.prepare<[string], { receivedAt: number; payload: Buffer }>(
        `SELECT received_at AS receivedAt, payload FROM log_batches WHERE device_id = ? ORDER BY seq DESC`,
      ),
      getDevice: db.prepare<[string], { config: string | null; pathpoints: string }>(`SELECT config, pathpoints FROM devices WHERE device_id = ?`),
      putConfig: db.prepare(`INSERT INTO devices (device_id, config) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET config = excluded.config`),
      putPathpoints: db.prepare(
        `INSERT INTO devices (device_id, pathpoints) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET pathpoints = excluded.pathpoints`,
      ),
      insertReceipt: db.prepare(`INSERT OR IGNORE INTO message_receipts (device_id, uuid, received_at) VALUES (?, ?, ?)`),
      getReceipt: db.prepare<[string, string], { received_at: number }>(`SELECT received_at FROM message_receipts WHERE device_id = ? AND uuid = ?`),
      baobs: db.prepare<[string], BaobInfo>(
        `SELECT key, version, size, updated_at AS updatedAt FROM baobs WHERE device_id = ? AND deleted = 0 ORDER BY key`,
      ),
      baob: db.prepare<[string, string], BaobInfo & { data: Buffer }>(
        `SELECT key, version, size, updated_at AS updatedAt, data FROM baobs WHERE device_id = ? AND key = ? AND deleted = 0`,
      ),
      baobVersion: db.prepare<[string, string], { version: number; deleted: number }>(`SELECT version, deleted FROM baobs WHERE device_id = ? AND key = ?`),
      putBaob: db.prepare(
        `INSERT INTO baobs (device_id, key, version, size, updated_at, deleted, data) VALUES (@deviceId, @key, @version, @size, @updatedAt, 0, @data)
         ON CONFLICT (device_id, key) DO UPDATE SET version = excluded.version, size = excluded.size, updated_at = excluded.updated_at, deleted = 0, data = excluded.data`,
      ),
      deleteBaob: db.prepare(`UPDATE baobs SET deleted = 1, data = NULL, size = 0, updated_at = ? WHERE device_id = ? AND key = ? AND deleted = 0`),
    };
    const s = this.stmt;
    this.insertUploads = db.transaction((deviceId: string, data: UploadRow[], logs: UploadRow[]) => {
      dataDigests.insertNew(deviceId, data, (r) => s.insertData.run(deviceId, r.receivedAt, r.payload));
      logDigests.insertNew(deviceId, logs, (r) => s.insertLogs.run(deviceId, r.receivedAt, r.payload));
    });
    this.takeAllQueued = db.transaction((deviceId: string, at: number) => {
      const rows = s.allQueued.all(deviceId);
      s.markDelivered.run(at, deviceId);
      return rows.map((r) => ({ ...toRecord(r), state: 'delivered' as const, settledAt: at, deliveries: r.deliveries + 1 }));
    });
    const take = db.transaction((deviceId: string) => {
      const row = s.nextQueued.get(deviceId);
      if (!row) return null;
      s.markInFlight.run(row.id);
      return { ...toRecord(row), state: 'in-flight' as const, deliveries: row.deliveries + 1 };
    });
    // Marking an order in flight needs no fsync: every open puts in-flight orders back in the
    // queue (above), so losing this commit to a power cut only means a redelivery, which the
    // device recognises. It saves one of the three fsyncs an order costs (bench/results).
    const full = (options.synchronous ?? 'FULL') === 'FULL';
    this.takeNextQueued = full
      ? (deviceId: string) => {
          db.pragma('synchronous = NORMAL');
          try {
            return take(deviceId);
          } finally {
            db.pragma('synchronous = FULL');
          }
        }
      : take;
  }

  insertOrder(order: OrderRecord): void {
    this.stmt.insertOrder.run({ id: order.id, deviceId: order.deviceId, sections: encode(order.sections), enqueuedAt: order.enqueuedAt });
  }

  putOrder(order: OrderRecord): void {
    const { id, deviceId, state, enqueuedAt, settledAt, reason, deliveries } = order;
    this.stmt.putOrder.run({ id, deviceId, sections: encode(order.sections), state, enqueuedAt, settledAt, reason, deliveries });
  }

  settle(orderId: string, outcome: Settlement, reason: string | null, at: number): boolean {
    return this.stmt.settle.run(outcome, reason, at, orderId).changes === 1;
  }

  requeue(orderIds: string[]): void {
    if (orderIds.length === 0) return;
    this.db.transaction(() => {
      for (const id of orderIds) this.stmt.requeue.run(id);
    })();
  }

  listOrders(deviceId: string, state: OrderState | undefined, limit: number): OrderRecord[] {
    const rows = state === undefined ? this.stmt.listAll.all(deviceId, limit) : this.stmt.listState.all(deviceId, state, limit);
    return rows.map(toRecord);
  }

  countOpenOrders(): { queued: number; inFlight: number } {
    const counts = new Map(this.stmt.countOpen.all().map((r) => [r.state, r.n]));
    return { queued: counts.get('queued') ?? 0, inFlight: counts.get('in-flight') ?? 0 };
  }

  getOrder(orderId: string): OrderRecord | null {
    const row = this.stmt.getOrder.get(orderId);
    return row ? toRecord(row) : null;
  }

  dataRows(deviceId: string): Iterable<UploadRow> {
    return this.stmt.dataRows.iterate(deviceId);
  }

  logRows(deviceId: string): Iterable<UploadRow> {
    return this.stmt.logRows.iterate(deviceId);
  }

  getDevice(deviceId: string): { config: DeviceConfig | null; pathpoints: PathpointDeclaration[] } {
    const row = this.stmt.getDevice.get(deviceId);
    return {
      config: row?.config ? (JSON.parse(row.config) as DeviceConfig) : null,
      pathpoints: row ? (JSON.parse(row.pathpoints) as PathpointDeclaration[]) : [],
    };
  }

  putConfig(deviceId: string, config: DeviceConfig): void {
    this.stmt.putConfig.run(deviceId, JSON.stringify(config));
  }

  putPathpoints(deviceId: string, declarations: PathpointDeclaration[]): void {
    this.stmt.putPathpoints.run(deviceId, JSON.stringify(declarations));
  }

  insertReceipt(deviceId: string, uuid: string, at: number): number {
    this.stmt.insertReceipt.run(deviceId, uuid, at);
    return this.stmt.getReceipt.get(deviceId, uuid)!.received_at;
  }

  receipts(deviceId: string, uuids: string[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const uuid of new Set(uuids)) {
      const row = this.stmt.getReceipt.get(deviceId, uuid);
      if (row) out.set(uuid, row.received_at);
    }
    return out;
  }

  baobs(deviceId: string): BaobInfo[] {
    return this.stmt.baobs.all(deviceId);
  }

  baob(deviceId: string, key: string): Baob | null {
    const row = this.stmt.baob.get(deviceId, key);
    return row ? { ...row, data: row.data ?? new Uint8Array(0) } : null;
  }

  baobVersion(deviceId: string, key: string): { version: number; deleted: boolean } | null {
    const row = this.stmt.baobVersion.get(deviceId, key);
    return row ? { version: row.version, deleted: row.deleted === 1 } : null;
  }

  putBaob(deviceId: string, baob: Baob): void {
    const { key, version, size, updatedAt, data } = baob;
    this.stmt.putBaob.run({ deviceId, key, version, size, updatedAt, data });
  }

  deleteBaob(deviceId: string, key: string, at: number): boolean {
    return this.stmt.deleteBaob.run(at, deviceId, key).changes === 1;
  }

  close(): void {
    this.db.close();
  }
}

/** Opens (creating if needed) the SQLite store at `file`. */
export function openSqliteStore(file: string, options: SqliteStoreOptions = {}): LocalStore {
  mkdirSync(dirname(file), { recursive: true });
  return new LocalStore(new SqliteTables(file, options));
}
