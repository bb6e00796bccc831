/**
 * Recently executed order ids (spec §5.4): the server redelivers an order that was sent but not
 * confirmed before a connection dropped; the device looks its id up here and confirms it
 * without running it again. Record an id after the order ran and before sending ORDER_CONFIRM:
 * a crash in between then costs one re-execution, never a lost order.
 */
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import type { SharedDatabase } from './shared-database.js';

export interface ExecutedOrders {
  has(id: string): boolean;
  remember(id: string): void;
  readonly size: number;
  close(): void;
}

export interface ExecutedOrdersOptions {
  /** Ids kept at most; the oldest go first. Default 10 000. */
  maxEntries?: number;
  /** Ids older than this are forgotten. Default: kept until pushed out by maxEntries. */
  maxAgeMs?: number;
  /** Clock (unix ms). Default Date.now. */
  now?: () => number;
}

export const DEFAULT_EXECUTED_ORDERS_KEPT = 10_000;

export class MemoryExecutedOrders implements ExecutedOrders {
  /** id -> when remembered; a Map iterates in insertion order, so the oldest come first. */
  private readonly ids = new Map<string, number>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(options: ExecutedOrdersOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_EXECUTED_ORDERS_KEPT;
    this.maxAgeMs = options.maxAgeMs ?? Infinity;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    const at = this.ids.get(id);
    return at !== undefined && this.now() - at <= this.maxAgeMs;
  }

  remember(id: string): void {
    const now = this.now();
    this.ids.delete(id);
    this.ids.set(id, now);
    for (const [oldest, at] of this.ids) {
      if (this.ids.size <= this.maxEntries && now - at <= this.maxAgeMs) break;
      this.ids.delete(oldest);
    }
  }

  close(): void {}
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS executed_orders (
  seq INTEGER PRIMARY KEY,   -- remember order: the oldest are evicted first
  id TEXT NOT NULL UNIQUE,
  executed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executed_orders_by_time ON executed_orders (executed_at);`;

/** Durable store in the device database (the spool's file; pass the shared Database). */
export class SqliteExecutedOrders implements ExecutedOrders {
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly lookup;
  private readonly countAll;
  private readonly store: (id: string, now: number) => void;

  /** `source`: a database file path, or an open database shared with other stores (not closed by close()). */
  static open(source: string | SharedDatabase, options: ExecutedOrdersOptions = {}): SqliteExecutedOrders {
    return typeof source === 'string'
      ? new SqliteExecutedOrders(openDeviceDatabase(source), true, options)
      : new SqliteExecutedOrders(source as DeviceDatabase, false, options);
  }

  private constructor(
    private readonly db: DeviceDatabase,
    private readonly ownsDb: boolean,
    options: ExecutedOrdersOptions,
  ) {
    const maxEntries = options.maxEntries ?? DEFAULT_EXECUTED_ORDERS_KEPT;
    this.maxAgeMs = options.maxAgeMs ?? Infinity;
    this.now = options.now ?? Date.now;
    db.exec(SCHEMA);
    this.lookup = db.prepare<[string], { executed_at: number }>('SELECT executed_at FROM executed_orders WHERE id = ?');
    this.countAll = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM executed_orders');
    const upsert = db.prepare('INSERT OR REPLACE INTO executed_orders (id, executed_at) VALUES (?, ?)');
    const evictExpired = db.prepare('DELETE FROM executed_orders WHERE executed_at < ?');
    const evictOldest = db.prepare('DELETE FROM executed_orders WHERE seq IN (SELECT seq FROM executed_orders ORDER BY seq LIMIT ?)');
    const prune = (now: number) => {
      if (Number.isFinite(this.maxAgeMs)) evictExpired.run(now - this.maxAgeMs);
      const excess = this.size - maxEntries;
      if (excess > 0) evictOldest.run(excess);
    };
    this.store = db.transaction((id: string, now: number) => {
      upsert.run(id, now);
      prune(now);
    });
    prune(this.now()); // the bounds may have shrunk since the file was written
  }

  get size(): number {
    return this.countAll.get()!.n;
  }

  has(id: string): boolean {
    const row = this.lookup.get(id);
    return row !== undefined && this.now() - row.executed_at <= this.maxAgeMs;
  }

  /** Committed (fsynced) before it returns. */
  remember(id: string): void {
    this.store(id, this.now());
  }

  close(): void {
    if (this.ownsDb) this.db.close();
  }
}
