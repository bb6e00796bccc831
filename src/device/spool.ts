/**
 * The device's durable spool of pathpoint values (spec §8): values wait here until the server
 * confirms the batch that carried them, across reconnects and restarts. The spool owns the
 * values, the batches and the batch limits; the upload machine only asks it what to send next.
 *
 * Life of a value: push() → pending → in a batch (formed when it is due: maxValues, maxBytes or
 * maxAgeMs, or a flush) → confirm() deletes it, or reject() sets the batch aside (kept for
 * inspection, never resent). A batch formed but not confirmed keeps its content: it is handed
 * out again, byte for byte the same, after a reconnect or a restart.
 *
 * A row that cannot be read (garbage bytes, a truncated value, a value or path of the wrong
 * type) is moved aside as stored — raw, never decoded again — reported once through
 * `onUnreadable`, and never blocks the rest.
 */
import { decode, encode } from '../minijson/index.js';
import { parsePathpointData, type PathpointSeries, type PathpointValue } from '../protocol/index.js';
import { withDefaults } from '../../machines/common.js';
import type { BatchSettlement } from '../../machines/upload.js';
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import type { SharedDatabase } from './shared-database.js';

export interface SpoolBatch {
  id: number;
  /** Values grouped by path, in the order they were pushed: the DATA_STREAM payload. */
  series: PathpointSeries[];
  /** `series` as MiniJSON; payload.length is the batch's encoded size. */
  payload: Uint8Array;
  valueCount: number;
}

/** When a batch is due and how big it may be. One set of defaults, here. */
export interface BatchLimits {
  /** A batch holds at most this many values; this many pending make one due. Default 1000. */
  maxValues?: number;
  /** Upper bound of the encoded payload, except that a batch always holds at least one value; this many bytes pending make one due. Default 64 KiB. */
  maxBytes?: number;
  /** A value pending this long makes a batch due. Default 5 s. */
  maxAgeMs?: number;
}

export const DEFAULT_BATCH_LIMITS: Required<BatchLimits> = { maxValues: 1000, maxBytes: 64 * 1024, maxAgeMs: 5_000 };

export interface RejectedBatch {
  id: number;
  reason: string;
  /** Unix ms. */
  rejectedAt: number;
  /** The batch's values ([] if its payload cannot be decoded: see `payload`). */
  series: PathpointSeries[];
  payload: Uint8Array;
}

/** A row set aside because it could not be read, as it was stored. */
export interface UnreadableRow {
  seq: number;
  batchId: number | null;
  path: unknown;
  value: unknown;
  reason: string;
  /** Unix ms. */
  foundAt: number;
}

export interface SpoolOptions {
  /** Values held at most (pending and in batches). Default 1 000 000. */
  maxValues?: number;
  /** Rejected batches and unreadable rows kept for inspection; the oldest go first. Default 1000 each. */
  maxRejected?: number;
  batch?: BatchLimits;
  /** Clock (unix ms): batch age, rejectedAt. Default Date.now. */
  now?: () => number;
  /** Told once per set of rows set aside as unreadable. Must not throw (it is guarded anyway). */
  onUnreadable?: (count: number, reason: string) => void;
}

/** What the upload machine asks (machines/upload.ts: NextBatchesInput). */
export interface NextBatchesRequest {
  max: number;
  exclude: number[];
  flush: boolean;
}
export interface OutgoingBatch {
  id: number;
  values: number;
  encoded: Uint8Array;
}

export interface Spool {
  /**
   * Appends values. Resolves once they are stored (durably, for the SQLite spool); rejects with
   * SpoolFullError when they do not fit, PayloadError when malformed, SpoolStorageError when
   * the storage fails (a full disk): in every case nothing of the push was stored.
   */
  push(data: PathpointSeries | PathpointSeries[]): Promise<void>;
  /**
   * What to send next, at most `max` batches, none of `exclude`: unconfirmed batches first
   * (oldest first), then new ones formed from pending values that are due (all of them with
   * `flush`). `dueInMs` when values remain pending: ask again then.
   */
  nextBatches(request: NextBatchesRequest): { batches: OutgoingBatch[]; dueInMs?: number };
  /**
   * Applies answers in order: confirmed batches are deleted, rejected ones set aside. Returns
   * those applied, with how many values left the spool (0 for a batch it no longer had). If the
   * storage fails, stops there: throws when none could be applied.
   */
  settle(settlements: BatchSettlement[]): (BatchSettlement & { values: number })[];
  /** Forms a batch from the oldest pending values now, due or not; undefined when none are pending. */
  takeBatch(limits?: BatchLimits): SpoolBatch | undefined;
  /** The server stored the batch: delete it. False if there is no such batch. */
  confirm(batchId: number): boolean;
  /** The server refused the batch: keep it aside, never resend. False if there is no such batch. */
  reject(batchId: number, reason: string): boolean;
  /** An unconfirmed batch, with the content it was formed with (less any row found unreadable). */
  batch(batchId: number): SpoolBatch | undefined;
  /** Unconfirmed batches, oldest first. */
  unconfirmedBatches(): SpoolBatch[];
  /** Their ids only, oldest first (cheap). */
  unconfirmedBatchIds(): number[];
  /** Most recently rejected batches first. */
  rejected(limit?: number): RejectedBatch[];
  /** Most recently found unreadable rows first. */
  unreadable(limit?: number): UnreadableRow[];
  /** Values in no batch yet. */
  readonly pendingValues: number;
  /** Values in unconfirmed batches. */
  readonly batchedValues: number;
  readonly unconfirmedBatchCount: number;
  readonly rejectedBatches: number;
  readonly unreadableRows: number;
  readonly maxValues: number;
  readonly limits: Required<BatchLimits>;
  /** No room for another value: wait for waitForSpace() before pushing. */
  readonly isFull: boolean;
  /** Resolves when `values` more values fit (confirm/reject free room); rejects when the spool closes. */
  waitForSpace(values?: number): Promise<void>;
  /** Stores what push() has queued, then releases the storage. Waiters for space are rejected. */
  close(): Promise<void>;
}

export class SpoolFullError extends Error {
  override name = 'SpoolFullError';
}

/** The storage failed (e.g. SQLITE_FULL: the disk is full); nothing of the operation was stored. */
export class SpoolStorageError extends Error {
  override name = 'SpoolStorageError';
  constructor(
    message: string,
    /** SQLite's code, e.g. SQLITE_FULL, SQLITE_IOERR_WRITE. */
    readonly code?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export class SpoolClosedError extends Error {
  override name = 'SpoolClosedError';
  constructor() {
    super('spool is closed');
  }
}

export const DEFAULT_SPOOL_MAX_VALUES = 1_000_000;
const DEFAULT_MAX_REJECTED = 1000;
/** How many just-formed batches the spool keeps in memory; older ones are read back from storage. */
const FORMED_BATCHES_KEPT = 32;

/** A stored value as read back: its path and MiniJSON encoding, as the storage has them (maybe damaged). */
interface RawRow {
  seq: number;
  path: unknown;
  encoded: unknown;
}
/** A row that passed the checks. */
interface Row {
  seq: number;
  path: string;
  encoded: Uint8Array;
  value: PathpointValue;
}

function storageError(error: unknown, what: string): Error {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return error as Error;
  return new SpoolStorageError(`spool ${what} failed: ${(error as Error).message} (${code})`, code, { cause: error });
}

/** A stored row's value, decoded and checked, or why it cannot be sent. */
function readRow(row: RawRow): { value: PathpointValue } | { problem: string } {
  if (typeof row.path !== 'string' || row.path.length === 0) return { problem: `path is ${row.path instanceof Uint8Array ? 'bytes' : typeof row.path}, not text` };
  if (!(row.encoded instanceof Uint8Array)) return { problem: `value is ${row.encoded === null ? 'null' : typeof row.encoded}, not MiniJSON bytes` };
  let value: unknown;
  try {
    value = decode(row.encoded);
  } catch (error) {
    return { problem: `value is not MiniJSON: ${(error as Error).message}` };
  }
  try {
    parsePathpointData([{ path: row.path, values: [value] }]);
  } catch (error) {
    return { problem: `value is not a pathpoint value: ${(error as Error).message}` };
  }
  return { value: value as PathpointValue };
}

/** Splits raw rows into sound ones (decoded) and unreadable ones (with the reason). */
function check(raw: RawRow[]): { rows: Row[]; bad: { seq: number; reason: string }[] } {
  const rows: Row[] = [];
  const bad: { seq: number; reason: string }[] = [];
  for (const r of raw) {
    const read = readRow(r);
    if ('problem' in read) bad.push({ seq: r.seq, reason: read.problem });
    else rows.push({ seq: r.seq, path: r.path as string, encoded: r.encoded as Uint8Array, value: read.value });
  }
  return { rows, bad };
}

/*
 * Size bound of the batch payload: the values' encodings are exact; per path at most
 * map header 1 + "path" key 5 + string header 5 + path bytes + "values" key 7 + list header 5;
 * plus 5 for the outer list header.
 */
const SERIES_OVERHEAD = 23;
const LIST_OVERHEAD = 5;

/** How many of `rows` (oldest first) fit the limits; at least one when any is given. */
function fittingCount(rows: { path: string; encoded: Uint8Array }[], maxValues: number, maxBytes: number): number {
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

// ---- the payload, framed from the stored encodings -----------------------------------------

const PATH_KEY = Buffer.from([4, ...Buffer.from('path')]);
const VALUES_KEY = Buffer.from([6, ...Buffer.from('values')]);
/** A string-key object of 2 entries (MiniJSON short object header). */
const OBJ2 = Buffer.from([0x52]);

/** A MiniJSON list header for `n` items: the same bytes the encoder writes. */
function listHeader(n: number): Buffer {
  if (n < 16) return Buffer.from([0x40 | n]);
  if (n <= 0xff) return Buffer.from([7, n]);
  if (n <= 0xffff) return Buffer.from([15, n >>> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 16;
  b.writeUInt32BE(n, 1);
  return b;
}

/**
 * `[{path, values}…]` as MiniJSON, byte for byte what encode() writes, built around the values'
 * stored encodings: nothing is decoded and encoded again.
 */
export function frameSeries(groups: [path: string, values: Uint8Array[]][]): Uint8Array {
  const parts: Uint8Array[] = [listHeader(groups.length)];
  for (const [path, values] of groups) parts.push(OBJ2, PATH_KEY, encode(path), VALUES_KEY, listHeader(values.length), ...values);
  return Buffer.concat(parts);
}

/** Groups rows by path (paths in order of first appearance, values in push order). */
function toBatch(id: number, rows: Row[]): SpoolBatch {
  const byPath = new Map<string, Row[]>();
  for (const row of rows) {
    let list = byPath.get(row.path);
    if (!list) byPath.set(row.path, (list = []));
    list.push(row);
  }
  const series: PathpointSeries[] = [];
  const groups: [string, Uint8Array[]][] = [];
  for (const [path, list] of byPath) {
    series.push({ path, values: list.map((r) => r.value) });
    groups.push([path, list.map((r) => r.encoded)]);
  }
  return { id, series, payload: frameSeries(groups), valueCount: rows.length };
}

function toRows(data: PathpointSeries | PathpointSeries[]): { path: string; encoded: Uint8Array }[] {
  const series = parsePathpointData(Array.isArray(data) ? data : [data]);
  const rows: { path: string; encoded: Uint8Array }[] = [];
  // encode() results stay valid: later calls write after them.
  for (const s of series) for (const value of s.values) rows.push({ path: s.path, encoded: encode(value) });
  return rows;
}

/** Capacity, counters, batch limits, waiters and the checks of read rows, common to both stores. */
abstract class SpoolBase implements Spool {
  readonly maxValues: number;
  readonly limits: Required<BatchLimits>;
  pendingValues = 0;
  batchedValues = 0;
  rejectedBatches = 0;
  unreadableRows = 0;
  /** Encoded bytes of the pending values (a due rule, not exact: path overhead is left out). */
  protected pendingBytes = 0;
  /** When the oldest pending value arrived (unix ms). */
  protected oldestPendingAt = 0;
  /** Unconfirmed batch id → its value count, in id order. */
  protected readonly unconfirmed = new Map<number, number>();
  /** Values accepted by push() but not yet stored. */
  protected queuedValues = 0;
  protected readonly maxRejected: number;
  protected readonly now: () => number;
  protected closed = false;
  private readonly onUnreadable?: (count: number, reason: string) => void;
  /** Batches formed lately, so that sending one right after forming it reads nothing back. */
  private readonly formed = new Map<number, SpoolBatch>();
  private spaceWaiters: { values: number; resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(options: SpoolOptions) {
    this.maxValues = options.maxValues ?? DEFAULT_SPOOL_MAX_VALUES;
    this.maxRejected = options.maxRejected ?? DEFAULT_MAX_REJECTED;
    this.limits = withDefaults(DEFAULT_BATCH_LIMITS, options.batch);
    this.now = options.now ?? Date.now;
    this.onUnreadable = options.onUnreadable;
  }

  get unconfirmedBatchCount(): number {
    return this.unconfirmed.size;
  }

  private get heldValues(): number {
    return this.pendingValues + this.batchedValues + this.queuedValues;
  }

  get isFull(): boolean {
    return this.heldValues >= this.maxValues;
  }

  async push(data: PathpointSeries | PathpointSeries[]): Promise<void> {
    if (this.closed) throw new SpoolClosedError();
    const rows = toRows(data);
    if (rows.length === 0) return;
    if (this.heldValues + rows.length > this.maxValues) {
      throw new SpoolFullError(`spool full: ${this.heldValues} of ${this.maxValues} values held, ${rows.length} more do not fit`);
    }
    await this.store(rows);
  }

  waitForSpace(values = 1): Promise<void> {
    if (this.closed) return Promise.reject(new SpoolClosedError());
    if (values > this.maxValues) return Promise.reject(new RangeError(`${values} values never fit a spool of ${this.maxValues}`));
    if (this.heldValues + values <= this.maxValues) return Promise.resolve();
    return new Promise((resolve, reject) => this.spaceWaiters.push({ values, resolve, reject }));
  }

  nextBatches(request: NextBatchesRequest): { batches: OutgoingBatch[]; dueInMs?: number } {
    this.storeQueued();
    const out: OutgoingBatch[] = [];
    const exclude = new Set(request.exclude);
    for (const id of [...this.unconfirmed.keys()]) {
      if (out.length >= request.max) break;
      if (exclude.has(id)) continue;
      const batch = this.batch(id);
      if (batch) out.push({ id, values: batch.valueCount, encoded: batch.payload });
    }
    while (out.length < request.max && this.isDue(request.flush)) {
      const batch = this.takeBatch();
      if (batch) out.push({ id: batch.id, values: batch.valueCount, encoded: batch.payload });
    }
    if (this.pendingValues === 0) return { batches: out };
    return { batches: out, dueInMs: Math.max(1, this.oldestPendingAt + this.limits.maxAgeMs - this.now()) };
  }

  settle(settlements: BatchSettlement[]): (BatchSettlement & { values: number })[] {
    const done: (BatchSettlement & { values: number })[] = [];
    for (const s of settlements) {
      const values = this.unconfirmed.get(s.id) ?? 0;
      try {
        if (s.outcome === 'confirmed') this.confirm(s.id);
        else this.reject(s.id, s.reason ?? 'rejected');
      } catch (error) {
        if (done.length === 0) throw error;
        break; // what was applied counts; the rest is tried again
      }
      done.push({ ...s, values });
    }
    return done;
  }

  takeBatch(limits: BatchLimits = {}): SpoolBatch | undefined {
    this.storeQueued();
    const maxValues = limits.maxValues ?? this.limits.maxValues;
    const maxBytes = limits.maxBytes ?? this.limits.maxBytes;
    while (this.pendingValues > 0) {
      const raw = this.pendingRows(maxValues);
      if (raw.length === 0) {
        // The count was off (the file was changed under us): nothing is pending.
        this.pendingValues = this.pendingBytes = 0;
        return undefined;
      }
      const { rows, bad } = check(raw);
      const fit = rows.slice(0, fittingCount(rows, maxValues, maxBytes));
      const id = this.formBatch(fit, bad);
      this.countSetAside(bad, 'pending');
      const taken = fit.reduce((n, r) => n + r.encoded.length, 0);
      this.pendingValues = Math.max(0, this.pendingValues - fit.length - bad.length);
      this.pendingBytes = this.pendingValues === 0 ? 0 : Math.max(0, this.pendingBytes - taken);
      // What is left waits its own maxAgeMs: we do not know when each of those values came.
      if (this.pendingValues > 0) this.oldestPendingAt = this.now();
      if (id === undefined) continue; // only unreadable rows were there: look again
      const batch = toBatch(id, fit);
      this.batchedValues += fit.length;
      this.unconfirmed.set(id, fit.length);
      this.remember(batch);
      return batch;
    }
    return undefined;
  }

  confirm(batchId: number): boolean {
    return this.finish(batchId, () => this.deleteBatch(batchId));
  }

  reject(batchId: number, reason: string): boolean {
    return this.finish(batchId, () => {
      // The payload as formed, or framed from the stored bytes: a refused batch is never decoded again.
      const payload = this.formed.get(batchId)?.payload ?? this.rawPayload(batchId);
      this.moveToRejected(batchId, reason, payload);
      this.rejectedBatches = Math.min(this.rejectedBatches + 1, this.maxRejected);
    });
  }

  batch(batchId: number): SpoolBatch | undefined {
    const count = this.unconfirmed.get(batchId);
    if (count === undefined) return undefined;
    const formed = this.formed.get(batchId);
    if (formed) return formed;
    const { rows, bad } = check(this.batchRows(batchId));
    if (bad.length) {
      this.setAside(bad);
      this.countSetAside(bad, `batch ${batchId}`);
      this.batchedValues -= count - rows.length;
      if (rows.length === 0) {
        this.deleteBatch(batchId);
        this.unconfirmed.delete(batchId);
        this.wakeSpaceWaiters();
        return undefined;
      }
      this.recount(batchId, rows.length);
      this.unconfirmed.set(batchId, rows.length);
    }
    return toBatch(batchId, rows);
  }

  unconfirmedBatches(): SpoolBatch[] {
    return this.unconfirmedBatchIds().flatMap((id) => this.batch(id) ?? []);
  }

  unconfirmedBatchIds(): number[] {
    return [...this.unconfirmed.keys()].sort((a, b) => a - b);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      this.storeQueued();
    } finally {
      this.closed = true;
      for (const w of this.spaceWaiters.splice(0)) w.reject(new SpoolClosedError());
      this.release();
    }
  }

  protected isDue(flush: boolean): boolean {
    if (this.pendingValues === 0) return false;
    return flush || this.pendingValues >= this.limits.maxValues || this.pendingBytes >= this.limits.maxBytes || this.now() >= this.oldestPendingAt + this.limits.maxAgeMs;
  }

  /** Stored rows are now pending. */
  protected stored(rows: { encoded: Uint8Array }[]): void {
    if (this.pendingValues === 0) this.oldestPendingAt = this.now();
    this.pendingValues += rows.length;
    for (const r of rows) this.pendingBytes += r.encoded.length;
  }

  private finish(batchId: number, apply: () => void): boolean {
    const count = this.unconfirmed.get(batchId);
    if (count === undefined) return false;
    apply();
    this.unconfirmed.delete(batchId);
    this.formed.delete(batchId);
    this.batchedValues -= count;
    this.wakeSpaceWaiters();
    return true;
  }

  private remember(batch: SpoolBatch): void {
    this.formed.set(batch.id, batch);
    if (this.formed.size > FORMED_BATCHES_KEPT) this.formed.delete(this.formed.keys().next().value!);
  }

  private countSetAside(bad: { reason: string }[], where: string): void {
    if (bad.length === 0) return;
    this.unreadableRows = Math.min(this.unreadableRows + bad.length, this.maxRejected);
    try {
      this.onUnreadable?.(bad.length, `${bad.length} unreadable spool row${bad.length > 1 ? 's' : ''} (${where}) set aside: ${bad[0].reason}`);
    } catch {
      // A reporting hook must not break the spool.
    }
  }

  private wakeSpaceWaiters(): void {
    this.spaceWaiters = this.spaceWaiters.filter((w) => {
      if (this.heldValues + w.values > this.maxValues) return true;
      w.resolve();
      return false;
    });
  }

  /** The payload of a batch framed from its stored rows, without decoding (rows of the wrong type are left out). */
  private rawPayload(batchId: number): Uint8Array {
    const groups = new Map<string, Uint8Array[]>();
    for (const r of this.batchRows(batchId)) {
      if (typeof r.path !== 'string' || !(r.encoded instanceof Uint8Array)) continue;
      let list = groups.get(r.path);
      if (!list) groups.set(r.path, (list = []));
      list.push(r.encoded);
    }
    return frameSeries([...groups]);
  }

  abstract rejected(limit?: number): RejectedBatch[];
  abstract unreadable(limit?: number): UnreadableRow[];
  /** Stores rows; resolves when they are stored. Counts them in queuedValues until then. */
  protected abstract store(rows: { path: string; encoded: Uint8Array }[]): Promise<void>;
  /** Stores whatever store() still holds, synchronously. */
  protected abstract storeQueued(): void;
  /** The oldest pending rows, as stored. */
  protected abstract pendingRows(limit: number): RawRow[];
  /** The rows of an unconfirmed batch, as stored. */
  protected abstract batchRows(batchId: number): RawRow[];
  /** In one step: set `bad` aside, and (when `rows` is not empty) make `rows` a new batch; its id. */
  protected abstract formBatch(rows: Row[], bad: { seq: number; reason: string }[]): number | undefined;
  protected abstract setAside(bad: { seq: number; reason: string }[]): void;
  protected abstract recount(batchId: number, count: number): void;
  protected abstract deleteBatch(batchId: number): void;
  protected abstract moveToRejected(batchId: number, reason: string, payload: Uint8Array): void;
  protected abstract release(): void;
}

function decodeSeries(payload: Uint8Array): PathpointSeries[] {
  try {
    return parsePathpointData(decode(payload));
  } catch {
    return [];
  }
}

// ---- in memory ------------------------------------------------------------------------------

/** Same behaviour as the SQLite spool, without durability: for tests and diskless setups. */
export class MemorySpool extends SpoolBase {
  private pending: RawRow[] = [];
  private readonly batches = new Map<number, RawRow[]>();
  private rejectedList: RejectedBatch[] = [];
  private unreadableList: UnreadableRow[] = [];
  private nextBatchId = 1;
  private nextSeq = 1;

  constructor(options: SpoolOptions = {}) {
    super(options);
  }

  protected async store(rows: { path: string; encoded: Uint8Array }[]): Promise<void> {
    for (const row of rows) this.pending.push({ seq: this.nextSeq++, ...row });
    this.stored(rows);
  }

  protected storeQueued(): void {}

  protected pendingRows(limit: number): RawRow[] {
    return this.pending.slice(0, limit);
  }

  protected batchRows(batchId: number): RawRow[] {
    return this.batches.get(batchId) ?? [];
  }

  protected formBatch(rows: Row[], bad: { seq: number; reason: string }[]): number | undefined {
    this.setAside(bad);
    if (rows.length === 0) return undefined;
    const seqs = new Set(rows.map((r) => r.seq));
    const id = this.nextBatchId++;
    this.batches.set(id, this.pending.filter((r) => seqs.has(r.seq)));
    this.pending = this.pending.filter((r) => !seqs.has(r.seq));
    return id;
  }

  protected setAside(bad: { seq: number; reason: string }[]): void {
    for (const b of bad) {
      const take = (list: RawRow[]) => {
        const i = list.findIndex((r) => r.seq === b.seq);
        return i < 0 ? undefined : list.splice(i, 1)[0];
      };
      let batchId: number | null = null;
      let row = take(this.pending);
      for (const [id, list] of this.batches) {
        if (row) break;
        row = take(list);
        if (row) batchId = id;
      }
      if (row) this.unreadableList.push({ seq: row.seq, batchId, path: row.path, value: row.encoded, reason: b.reason, foundAt: this.now() });
    }
    if (this.unreadableList.length > this.maxRejected) this.unreadableList.splice(0, this.unreadableList.length - this.maxRejected);
  }

  protected recount(): void {}

  protected deleteBatch(batchId: number): void {
    this.batches.delete(batchId);
  }

  protected moveToRejected(batchId: number, reason: string, payload: Uint8Array): void {
    this.rejectedList.push({ id: batchId, reason, rejectedAt: this.now(), series: decodeSeries(payload), payload });
    this.batches.delete(batchId);
    if (this.rejectedList.length > this.maxRejected) this.rejectedList.shift();
  }

  /** Test hook: damage a stored row (as a failing disk or a careless hand would). */
  corrupt(seq: number, change: { path?: unknown; encoded?: unknown }): void {
    for (const list of [this.pending, ...this.batches.values()]) {
      const row = list.find((r) => r.seq === seq);
      if (row) Object.assign(row, change);
    }
  }

  rejected(limit = 100): RejectedBatch[] {
    return this.rejectedList.slice(-limit).reverse();
  }

  unreadable(limit = 100): UnreadableRow[] {
    return this.unreadableList.slice(-limit).reverse();
  }

  protected release(): void {}
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
);
CREATE TABLE IF NOT EXISTS spool_unreadable (
  seq INTEGER PRIMARY KEY,          -- the row's seq in spool_values
  batch_id INTEGER,
  path,                             -- as it was stored, whatever its type
  value,                            -- as it was stored
  reason TEXT NOT NULL,
  found_at INTEGER NOT NULL
);`;

function prepareSpoolStatements(db: DeviceDatabase) {
  return {
    insertValue: db.prepare('INSERT INTO spool_values (path, value) VALUES (?, ?)'),
    pending: db.prepare('SELECT seq, path, value AS encoded FROM spool_values WHERE batch_id IS NULL ORDER BY seq LIMIT ?'),
    insertBatch: db.prepare('INSERT INTO spool_batches (value_count, created_at) VALUES (?, ?)'),
    markBatch: db.prepare('UPDATE spool_values SET batch_id = ? WHERE batch_id IS NULL AND seq <= ?'),
    batchRows: db.prepare('SELECT seq, path, value AS encoded FROM spool_values WHERE batch_id = ? ORDER BY seq'),
    recount: db.prepare('UPDATE spool_batches SET value_count = ? WHERE id = ?'),
    deleteValues: db.prepare('DELETE FROM spool_values WHERE batch_id = ?'),
    deleteBatch: db.prepare('DELETE FROM spool_batches WHERE id = ?'),
    insertRejected: db.prepare('INSERT OR REPLACE INTO spool_rejected (id, reason, rejected_at, payload) VALUES (?, ?, ?, ?)'),
    pruneRejected: db.prepare('DELETE FROM spool_rejected WHERE id NOT IN (SELECT id FROM spool_rejected ORDER BY id DESC LIMIT ?)'),
    rejected: db.prepare('SELECT id, reason, rejected_at, payload FROM spool_rejected ORDER BY id DESC LIMIT ?'),
    // Moved as stored: SQL copies the bytes, nothing is decoded.
    copyUnreadable: db.prepare('INSERT OR REPLACE INTO spool_unreadable (seq, batch_id, path, value, reason, found_at) SELECT seq, batch_id, path, value, ?, ? FROM spool_values WHERE seq = ?'),
    deleteValue: db.prepare('DELETE FROM spool_values WHERE seq = ?'),
    pruneUnreadable: db.prepare('DELETE FROM spool_unreadable WHERE seq NOT IN (SELECT seq FROM spool_unreadable ORDER BY found_at DESC, seq DESC LIMIT ?)'),
    unreadable: db.prepare('SELECT seq, batch_id, path, value, reason, found_at FROM spool_unreadable ORDER BY found_at DESC, seq DESC LIMIT ?'),
  };
}

/**
 * Durable spool in SQLite (see openDeviceDatabase for the durability settings). push() only
 * queues; all pushes made in one turn of the event loop are written in one transaction (group
 * commit), and each push resolves after that commit. So many small pushes cost one fsync; a
 * loop that awaits every push pays one fsync per value.
 */
export class SqliteSpool extends SpoolBase {
  private queue: { rows: { path: string; encoded: Uint8Array }[]; resolve: () => void; reject: (error: Error) => void }[] = [];
  private flushScheduled = false;
  private readonly statements: ReturnType<typeof prepareSpoolStatements>;
  private readonly insertQueued: (rows: { path: string; encoded: Uint8Array }[]) => void;
  private readonly assignBatch: (rows: Row[], bad: { seq: number; reason: string }[]) => number | undefined;
  private readonly moveUnreadable: (bad: { seq: number; reason: string }[]) => void;
  private readonly dropBatch: (id: number) => void;
  private readonly rejectBatch: (id: number, reason: string, payload: Uint8Array) => void;

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
    this.insertQueued = db.transaction((rows: { path: string; encoded: Uint8Array }[]) => {
      for (const row of rows) s.insertValue.run(row.path, row.encoded);
    });
    this.moveUnreadable = db.transaction((bad: { seq: number; reason: string }[]) => {
      for (const b of bad) {
        s.copyUnreadable.run(b.reason, this.now(), b.seq);
        s.deleteValue.run(b.seq);
      }
      if (bad.length) s.pruneUnreadable.run(this.maxRejected);
    });
    this.assignBatch = db.transaction((rows: Row[], bad: { seq: number; reason: string }[]) => {
      this.moveUnreadable(bad);
      if (rows.length === 0) return undefined;
      const id = Number(s.insertBatch.run(rows.length, this.now()).lastInsertRowid);
      s.markBatch.run(id, rows[rows.length - 1].seq);
      return id;
    });
    this.dropBatch = db.transaction((id: number) => {
      s.deleteValues.run(id);
      s.deleteBatch.run(id);
    });
    this.rejectBatch = db.transaction((id: number, reason: string, payload: Uint8Array) => {
      s.insertRejected.run(id, reason, this.now(), payload);
      s.pruneRejected.run(this.maxRejected);
      s.deleteValues.run(id);
      s.deleteBatch.run(id);
    });
    this.recover();
  }

  /**
   * Counts what an earlier run left, from the rows themselves (not from counters that a crash
   * or a damaged file may have made wrong): rows of a batch that no longer exists are pending
   * again; a batch without rows is dropped.
   */
  private recover(): void {
    const db = this.db;
    db.transaction(() => {
      db.prepare('UPDATE spool_values SET batch_id = NULL WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT id FROM spool_batches)').run();
      db.prepare('DELETE FROM spool_batches WHERE id NOT IN (SELECT DISTINCT batch_id FROM spool_values WHERE batch_id IS NOT NULL)').run();
    })();
    const pending = db.prepare('SELECT count(*) AS n, coalesce(sum(length(value)), 0) AS bytes FROM spool_values WHERE batch_id IS NULL').get() as { n: number; bytes: number };
    this.pendingValues = pending.n;
    this.pendingBytes = pending.bytes;
    // They have waited already: due at once.
    this.oldestPendingAt = this.now() - this.limits.maxAgeMs;
    const counts = db.prepare('SELECT batch_id AS id, count(*) AS n FROM spool_values WHERE batch_id IS NOT NULL GROUP BY batch_id ORDER BY batch_id').all() as { id: number; n: number }[];
    for (const b of counts) {
      this.unconfirmed.set(b.id, b.n);
      this.batchedValues += b.n;
    }
    this.rejectedBatches = (db.prepare('SELECT count(*) AS n FROM spool_rejected').get() as { n: number }).n;
    this.unreadableRows = (db.prepare('SELECT count(*) AS n FROM spool_unreadable').get() as { n: number }).n;
  }

  protected store(rows: { path: string; encoded: Uint8Array }[]): Promise<void> {
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
    const rows = queue.flatMap((q) => q.rows);
    this.queuedValues -= rows.length;
    try {
      this.insertQueued(rows);
    } catch (error) {
      // The transaction was rolled back: nothing of these pushes is stored, each one says so.
      const failure = storageError(error, 'write');
      for (const q of queue) q.reject(failure);
      return;
    }
    this.stored(rows);
    for (const q of queue) q.resolve();
  }

  protected pendingRows(limit: number): RawRow[] {
    return this.run('read', () => this.statements.pending.all(limit) as RawRow[]);
  }

  protected batchRows(batchId: number): RawRow[] {
    return this.run('read', () => this.statements.batchRows.all(batchId) as RawRow[]);
  }

  protected formBatch(rows: Row[], bad: { seq: number; reason: string }[]): number | undefined {
    return this.run('write', () => this.assignBatch(rows, bad));
  }

  protected setAside(bad: { seq: number; reason: string }[]): void {
    this.run('write', () => this.moveUnreadable(bad));
  }

  protected recount(batchId: number, count: number): void {
    this.run('write', () => this.statements.recount.run(count, batchId));
  }

  protected deleteBatch(batchId: number): void {
    this.run('write', () => this.dropBatch(batchId));
  }

  protected moveToRejected(batchId: number, reason: string, payload: Uint8Array): void {
    this.run('write', () => this.rejectBatch(batchId, reason, payload));
  }

  rejected(limit = 100): RejectedBatch[] {
    const rows = this.statements.rejected.all(limit) as { id: number; reason: string; rejected_at: number; payload: Buffer }[];
    return rows.map((r) => ({ id: r.id, reason: r.reason, rejectedAt: r.rejected_at, series: decodeSeries(r.payload), payload: r.payload }));
  }

  unreadable(limit = 100): UnreadableRow[] {
    const rows = this.statements.unreadable.all(limit) as { seq: number; batch_id: number | null; path: unknown; value: unknown; reason: string; found_at: number }[];
    return rows.map((r) => ({ seq: r.seq, batchId: r.batch_id, path: r.path, value: r.value, reason: r.reason, foundAt: r.found_at }));
  }

  protected release(): void {
    if (this.ownsDb) this.db.close();
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw storageError(error, what);
    }
  }
}
