/**
 * The device's durable spool of pathpoint values (spec §8): values wait here until the server
 * confirms the batch that carried them, across reconnects and restarts.
 *
 * Life of a value: push() -> pending -> takeBatch() puts it in a batch (in flight) ->
 * confirm() deletes it, or reject() moves the batch to the rejected table (kept, never resent).
 * A batch formed but not answered is returned by unconfirmedBatches() with the same content,
 * to be sent again on the next connection.
 */
import { decode, encode } from '../minijson/index.js';
import { parsePathpointData, type PathpointSeries, type PathpointValue } from '../protocol/index.js';
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import type { SharedDatabase } from './shared-database.js';

export interface SpoolBatch {
  id: number;
  /** Values grouped by path, in the order they were pushed: the DATA_STREAM payload. */
  series: PathpointSeries[];
  /** `series` encoded as MiniJSON; payload.length is the batch's encoded size. */
  payload: Uint8Array;
  valueCount: number;
}

export interface BatchLimits {
  /** Default 10 000. */
  maxValues?: number;
  /** Upper bound on the encoded payload, except that a batch always holds at least one value. Default 1 MiB. */
  maxBytes?: number;
}

export interface RejectedBatch {
  id: number;
  reason: string;
  /** Unix ms. */
  rejectedAt: number;
  series: PathpointSeries[];
}

export interface SpoolOptions {
  /** Values held at most (pending and in flight). Default 1 000 000. */
  maxValues?: number;
  /** Rejected batches kept for inspection; the oldest go first. Default 1000. */
  maxRejected?: number;
  /** Clock for rejectedAt. Default Date.now. */
  now?: () => number;
}

export interface Spool {
  /**
   * Appends values. Resolves once they are stored (durably, for the SQLite spool); rejects with
   * SpoolFullError, storing nothing, when they do not fit, or PayloadError when malformed.
   */
  push(data: PathpointSeries | PathpointSeries[]): Promise<void>;
  /** Forms a batch from the oldest pending values, or returns undefined when none are pending. */
  takeBatch(limits?: BatchLimits): SpoolBatch | undefined;
  /** The server stored the batch: delete it. False if no such batch is in flight. */
  confirm(batchId: number): boolean;
  /** The server refused the batch: keep it aside, never resend. False if no such batch is in flight. */
  reject(batchId: number, reason: string): boolean;
  /** A batch formed but not answered, with the content it was formed with; undefined if there is none. */
  batch(batchId: number): SpoolBatch | undefined;
  /** Batches formed but not answered, oldest first, with the content they were formed with. */
  unconfirmedBatches(): SpoolBatch[];
  /** Their ids only, oldest first (cheap). */
  unconfirmedBatchIds(): number[];
  /** Most recently rejected batches first. */
  rejected(limit?: number): RejectedBatch[];
  readonly pendingValues: number;
  readonly inFlightValues: number;
  readonly inFlightBatches: number;
  readonly rejectedBatches: number;
  readonly maxValues: number;
  /** No room for another value: wait for waitForSpace() before pushing. */
  readonly isFull: boolean;
  /** Resolves when `values` more values fit (confirm/reject free room). */
  waitForSpace(values?: number): Promise<void>;
  /** Stores what push() has queued, then releases the storage. */
  close(): Promise<void>;
}

export class SpoolFullError extends Error {
  override name = 'SpoolFullError';
}

export const DEFAULT_SPOOL_MAX_VALUES = 1_000_000;
export const DEFAULT_BATCH_MAX_VALUES = 10_000;
export const DEFAULT_BATCH_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_REJECTED = 1000;
/** How many just-formed batches the spool keeps in memory (at most 1 MiB each by default). */
const FORMED_BATCHES_KEPT = 32;

/** One stored value: its path and its MiniJSON encoding (`[ts, v]` or `[false, ts, code]`). */
interface Row {
  path: string;
  encoded: Uint8Array;
}

/*
 * Size bound of the batch payload: the values' encodings are exact; per path at most
 * map header 1 + "path" key 5 + string header 5 + path bytes + "values" key 7 + list header 5;
 * plus 5 for the outer list header.
 */
const SERIES_OVERHEAD = 23;
const LIST_OVERHEAD = 5;

/** How many of `rows` (oldest first) fit the limits; at least one when any is given. */
function fittingCount(rows: Iterable<Row>, limits: BatchLimits): number {
  const maxValues = limits.maxValues ?? DEFAULT_BATCH_MAX_VALUES;
  const maxBytes = limits.maxBytes ?? DEFAULT_BATCH_MAX_BYTES;
  const paths = new Set<string>();
  let bytes = LIST_OVERHEAD;
  let count = 0;
  for (const row of rows) {
    if (count >= maxValues) break;
    let cost = row.encoded.length;
    if (!paths.has(row.path)) cost += SERIES_OVERHEAD + Buffer.byteLength(row.path);
    if (count > 0 && bytes + cost > maxBytes) break;
    paths.add(row.path);
    bytes += cost;
    count++;
  }
  return count;
}

/** Groups rows by path (paths in order of first appearance, values in push order). */
function toBatch(id: number, rows: Row[]): SpoolBatch {
  const byPath = new Map<string, PathpointValue[]>();
  for (const row of rows) {
    let values = byPath.get(row.path);
    if (!values) byPath.set(row.path, (values = []));
    values.push(decode(row.encoded) as PathpointValue);
  }
  const series = [...byPath].map(([path, values]) => ({ path, values }));
  return { id, series, payload: encode(series), valueCount: rows.length };
}

function toRows(data: PathpointSeries | PathpointSeries[]): Row[] {
  const series = parsePathpointData(Array.isArray(data) ? data : [data]);
  const rows: Row[] = [];
  for (const s of series) for (const value of s.values) rows.push({ path: s.path, encoded: encode(value) });
  return rows;
}

/** Capacity, counters and waiters, common to both stores. */
abstract class SpoolBase implements Spool {
  readonly maxValues: number;
  pendingValues = 0;
  inFlightValues = 0;
  rejectedBatches = 0;
  /** In-flight batch id -> its value count. */
  protected readonly inFlight = new Map<number, number>();
  /** Values accepted by push() but not yet stored. */
  protected queuedValues = 0;
  protected readonly maxRejected: number;
  protected readonly now: () => number;
  protected closed = false;
  /**
   * Batches formed lately, so that sending one right after cutting it does not read, decode
   * and encode its values again. Bounded: offline, thousands of batches may be cut; those
   * older than this are read back from storage (as after a restart).
   */
  private readonly formed = new Map<number, SpoolBatch>();
  private spaceWaiters: { values: number; resolve: () => void }[] = [];

  constructor(options: SpoolOptions) {
    this.maxValues = options.maxValues ?? DEFAULT_SPOOL_MAX_VALUES;
    this.maxRejected = options.maxRejected ?? DEFAULT_MAX_REJECTED;
    this.now = options.now ?? Date.now;
  }

  get inFlightBatches(): number {
    return this.inFlight.size;
  }

  private get heldValues(): number {
    return this.pendingValues + this.inFlightValues + this.queuedValues;
  }

  get isFull(): boolean {
    return this.heldValues >= this.maxValues;
  }

  async push(data: PathpointSeries | PathpointSeries[]): Promise<void> {
    if (this.closed) throw new Error('spool is closed');
    const rows = toRows(data);
    if (rows.length === 0) return;
    if (this.heldValues + rows.length > this.maxValues) {
      throw new SpoolFullError(`spool full: ${this.heldValues} of ${this.maxValues} values held, ${rows.length} more do not fit`);
    }
    await this.store(rows);
  }

  waitForSpace(values = 1): Promise<void> {
    if (values > this.maxValues) return Promise.reject(new RangeError(`${values} values never fit a spool of ${this.maxValues}`));
    if (this.heldValues + values <= this.maxValues) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push({ values, resolve }));
  }

  takeBatch(limits: BatchLimits = {}): SpoolBatch | undefined {
    this.storeQueued();
    if (this.pendingValues === 0) return undefined;
    const batch = this.formBatch(limits);
    this.pendingValues -= batch.valueCount;
    this.inFlightValues += batch.valueCount;
    this.inFlight.set(batch.id, batch.valueCount);
    this.formed.set(batch.id, batch);
    if (this.formed.size > FORMED_BATCHES_KEPT) this.formed.delete(this.formed.keys().next().value!);
    return batch;
  }

  confirm(batchId: number): boolean {
    return this.finish(batchId, () => this.deleteBatch(batchId));
  }

  reject(batchId: number, reason: string): boolean {
    return this.finish(batchId, () => {
      this.moveToRejected(batchId, reason);
      this.rejectedBatches = Math.min(this.rejectedBatches + 1, this.maxRejected);
    });
  }

  private finish(batchId: number, apply: () => void): boolean {
    const count = this.inFlight.get(batchId);
    if (count === undefined) return false;
    apply();
    this.inFlight.delete(batchId);
    this.formed.delete(batchId);
    this.inFlightValues -= count;
    this.wakeSpaceWaiters();
    return true;
  }

  private wakeSpaceWaiters(): void {
    this.spaceWaiters = this.spaceWaiters.filter((w) => {
      if (this.heldValues + w.values > this.maxValues) return true;
      w.resolve();
      return false;
    });
  }

  batch(batchId: number): SpoolBatch | undefined {
    if (!this.inFlight.has(batchId)) return undefined;
    return this.formed.get(batchId) ?? this.readBatch(batchId);
  }

  unconfirmedBatches(): SpoolBatch[] {
    return this.unconfirmedBatchIds().map((id) => this.batch(id)!);
  }

  unconfirmedBatchIds(): number[] {
    return [...this.inFlight.keys()].sort((a, b) => a - b);
  }

  /** The content of an in-flight batch. */
  protected abstract readBatch(batchId: number): SpoolBatch;
  abstract rejected(limit?: number): RejectedBatch[];
  abstract close(): Promise<void>;
  /** Stores rows; resolves when they are stored. Counts them in queuedValues until then. */
  protected abstract store(rows: Row[]): Promise<void>;
  /** Stores whatever store() still holds, synchronously. */
  protected abstract storeQueued(): void;
  /** Forms a batch of the oldest pending values (there is at least one). */
  protected abstract formBatch(limits: BatchLimits): SpoolBatch;
  protected abstract deleteBatch(batchId: number): void;
  protected abstract moveToRejected(batchId: number, reason: string): void;
}

// ---- in memory ------------------------------------------------------------------------------

/** Same behaviour as the SQLite spool, without durability: for tests and diskless setups. */
export class MemorySpool extends SpoolBase {
  private pending: Row[] = [];
  private readonly batches = new Map<number, Row[]>();
  private rejectedList: { id: number; reason: string; rejectedAt: number; rows: Row[] }[] = [];
  private nextBatchId = 1;

  constructor(options: SpoolOptions = {}) {
    super(options);
  }

  protected async store(rows: Row[]): Promise<void> {
    // Rows hold encodings: later changes to the caller's arrays cannot reach the spool.
    for (const row of rows) this.pending.push(row);
    this.pendingValues += rows.length;
  }

  protected storeQueued(): void {}

  protected formBatch(limits: BatchLimits): SpoolBatch {
    const rows = this.pending.splice(0, fittingCount(this.pending, limits));
    const id = this.nextBatchId++;
    this.batches.set(id, rows);
    return toBatch(id, rows);
  }

  protected deleteBatch(batchId: number): void {
    this.batches.delete(batchId);
  }

  protected moveToRejected(batchId: number, reason: string): void {
    this.rejectedList.push({ id: batchId, reason, rejectedAt: this.now(), rows: this.batches.get(batchId)! });
    this.batches.delete(batchId);
    if (this.rejectedList.length > this.maxRejected) this.rejectedList.shift();
  }

  protected readBatch(batchId: number): SpoolBatch {
    return toBatch(batchId, this.batches.get(batchId)!);
  }

  rejected(limit = 100): RejectedBatch[] {
    return this.rejectedList
      .slice(-limit)
      .reverse()
      .map((r) => ({ id: r.id, reason: r.reason, rejectedAt: r.rejectedAt, series: toBatch(r.id, r.rows).series }));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

// ---- SQLite ---------------------------------------------------------------------------------

const SCHEMA = `
CREATE TABLE IF NOT EXISTS spool_values (
  seq INTEGER PRIMARY KEY,          -- push order; a new row always gets a higher seq than any held
  batch_id INTEGER,                 -- NULL while pending
  path TEXT NOT NULL,
  value BLOB NOT NULL               -- MiniJSON of [ts, v] or [false, ts, code]
);
CREATE INDEX IF NOT EXISTS spool_values_by_batch ON spool_values (batch_id, seq);
CREATE TABLE IF NOT EXISTS spool_batches (
  id INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, so a late answer cannot hit a newer batch
  value_count INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spool_rejected (
  id INTEGER PRIMARY KEY,           -- the batch id
  reason TEXT NOT NULL,
  rejected_at INTEGER NOT NULL,
  payload BLOB NOT NULL             -- the batch as MiniJSON
);`;

function prepareSpoolStatements(db: DeviceDatabase) {
  return {
    insertValue: db.prepare('INSERT INTO spool_values (path, value) VALUES (?, ?)'),
    pending: db.prepare('SELECT seq, path, value AS encoded FROM spool_values WHERE batch_id IS NULL ORDER BY seq LIMIT ?'),
    insertBatch: db.prepare('INSERT INTO spool_batches (value_count, created_at) VALUES (?, ?)'),
    markBatch: db.prepare('UPDATE spool_values SET batch_id = ? WHERE batch_id IS NULL AND seq <= ?'),
    batchRows: db.prepare('SELECT path, value AS encoded FROM spool_values WHERE batch_id = ? ORDER BY seq'),
    deleteValues: db.prepare('DELETE FROM spool_values WHERE batch_id = ?'),
    deleteBatch: db.prepare('DELETE FROM spool_batches WHERE id = ?'),
    insertRejected: db.prepare('INSERT OR REPLACE INTO spool_rejected (id, reason, rejected_at, payload) VALUES (?, ?, ?, ?)'),
    pruneRejected: db.prepare('DELETE FROM spool_rejected WHERE id NOT IN (SELECT id FROM spool_rejected ORDER BY id DESC LIMIT ?)'),
    rejected: db.prepare('SELECT id, reason, rejected_at, payload FROM spool_rejected ORDER BY id DESC LIMIT ?'),
  };
}

/**
 * Durable spool in SQLite (see openDeviceDatabase for the durability settings). push() only
 * queues; all pushes made in one turn of the event loop are written in one transaction (group
 * commit), and each push resolves after that commit. So many small pushes cost one fsync; a
 * loop that awaits every push pays one fsync per value.
 */
export class SqliteSpool extends SpoolBase {
  private queue: { rows: Row[]; resolve: () => void; reject: (error: Error) => void }[] = [];
  private flushScheduled = false;
  private readonly statements: ReturnType<typeof prepareSpoolStatements>;
  private readonly insertQueued: (rows: Row[]) => void;
  private readonly assignBatch: (count: number, lastSeq: number) => number;
  private readonly dropBatch: (id: number) => void;
  private readonly rejectBatch: (id: number, reason: string) => void;

  /** `source`: a database file path, or an open database shared with other stores (not closed by close()). */
  static open(source: string | SharedDatabase, options: SpoolOptions = {}): SqliteSpool {
    return typeof source === 'string' ? new SqliteSpool(openDeviceDatabase(source), true, options) : new SqliteSpool(source as DeviceDatabase, false, options);
  }

  private constructor(
    private readonly db: DeviceDatabase,
    private readonly ownsDb: boolean,
    options: SpoolOptions,
  ) {
    super(options);
    db.exec(SCHEMA);
    const s = (this.statements = prepareSpoolStatements(db));
    this.insertQueued = db.transaction((rows: Row[]) => {
      for (const row of rows) s.insertValue.run(row.path, row.encoded);
    });
    this.assignBatch = db.transaction((count: number, lastSeq: number) => {
      const id = Number(s.insertBatch.run(count, this.now()).lastInsertRowid);
      s.markBatch.run(id, lastSeq);
      return id;
    });
    this.dropBatch = db.transaction((id: number) => {
      s.deleteValues.run(id);
      s.deleteBatch.run(id);
    });
    this.rejectBatch = db.transaction((id: number, reason: string) => {
      s.insertRejected.run(id, reason, this.now(), this.readBatch(id).payload);
      s.pruneRejected.run(this.maxRejected);
      s.deleteValues.run(id);
      s.deleteBatch.run(id);
    });

    this.pendingValues = (db.prepare('SELECT count(*) AS n FROM spool_values WHERE batch_id IS NULL').get() as { n: number }).n;
    for (const b of db.prepare('SELECT id, value_count FROM spool_batches').all() as { id: number; value_count: number }[]) {
      this.inFlight.set(b.id, b.value_count);
      this.inFlightValues += b.value_count;
    }
    this.rejectedBatches = (db.prepare('SELECT count(*) AS n FROM spool_rejected').get() as { n: number }).n;
  }

  protected store(rows: Row[]): Promise<void> {
    this.queuedValues += rows.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.storeQueued());
    }
    return new Promise((resolve, reject) => this.queue.push({ rows, resolve, reject }));
  }

  protected storeQueued(): void {
    this.flushScheduled = false;
    const queue = this.queue;
    if (queue.length === 0) return;
    this.queue = [];
    const count = this.queuedValues;
    this.queuedValues = 0;
    try {
      this.insertQueued(queue.flatMap((q) => q.rows));
    } catch (error) {
      for (const q of queue) q.reject(error as Error);
      return;
    }
    this.pendingValues += count;
    for (const q of queue) q.resolve();
  }

  protected formBatch(limits: BatchLimits): SpoolBatch {
    const maxValues = limits.maxValues ?? DEFAULT_BATCH_MAX_VALUES;
    const candidates = this.statements.pending.all(maxValues) as (Row & { seq: number })[];
    const rows = candidates.slice(0, fittingCount(candidates, limits));
    const id = this.assignBatch(rows.length, rows[rows.length - 1].seq);
    return toBatch(id, rows);
  }

  protected readBatch(id: number): SpoolBatch {
    return toBatch(id, this.statements.batchRows.all(id) as Row[]);
  }

  protected deleteBatch(batchId: number): void {
    this.dropBatch(batchId);
  }

  protected moveToRejected(batchId: number, reason: string): void {
    this.rejectBatch(batchId, reason);
  }

  rejected(limit = 100): RejectedBatch[] {
    const rows = this.statements.rejected.all(limit) as { id: number; reason: string; rejected_at: number; payload: Buffer }[];
    return rows.map((r) => ({ id: r.id, reason: r.reason, rejectedAt: r.rejected_at, series: decode(r.payload) as PathpointSeries[] }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.storeQueued();
    this.closed = true;
    if (this.ownsDb) this.db.close();
  }
}
