/**
 * The Store for an in-process backend (memory or SQLite): the order-source bookkeeping, upload
 * encoding and config defaults live here once; a backend only provides synchronous tables.
 */
import { createHash, randomUUID } from 'node:crypto';
import { decode, encode } from '../../minijson/index.js';
import { baobProblem, PayloadError, type LogRecord, type PathpointDeclaration, type PathpointSeries, type Section } from '../../protocol/index.js';
import {
  applyConfigPatch,
  DEFAULT_LIST_LIMIT,
  defaultDeviceConfig,
  type DeviceConfig,
  type DeviceConfigPatch,
  type Baob,
  type BaobInfo,
  type BaobOffer,
  type ListOptions,
  type MessageReceipt,
  type OrderRecord,
  type OrderSource,
  type OrderState,
  type Settlement,
  type Store,
  type StoredLogRecord,
  type StoredSeries,
  type Uploads,
} from './types.js';

/**
 * How many of a device's most recent data batches are remembered (by SHA-256) to recognise a
 * re-sent one. A device re-sends only its unconfirmed batches (at most its upload window, 8 by
 * default), first thing after reconnecting, so a re-send is among its newest batches however
 * long it was away; 256 leaves room for large windows and HTTPS retries.
 */
export const DEFAULT_DEDUPE_WINDOW = 256;

export function checkedDedupeWindow(value = DEFAULT_DEDUPE_WINDOW): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`dedupeWindow must be a positive integer, not ${value}`);
  return value;
}

/** A stored upload: the MiniJSON of one DATA_STREAM / LOGS payload. */
export interface UploadRow {
  receivedAt: number;
  payload: Uint8Array;
  /** SHA-256 of the payload, the batch's identity for deduplication (data and log rows alike). */
  digest?: Uint8Array;
}

/** What a backend provides. Each call is atomic; `insertUploads` stores all rows or none. */
export interface Tables {
  insertOrder(order: OrderRecord): void;
  /** Inserts the order or replaces every field of the stored one (order history fed from outside). */
  putOrder(order: OrderRecord): void;
  /** Oldest queued order of the device, switched to in-flight with deliveries + 1. */
  takeNextQueued(deviceId: string): OrderRecord | null;
  /** in-flight → outcome; false when the order is not in flight. */
  settle(orderId: string, outcome: Settlement, reason: string | null, at: number): boolean;
  /** in-flight → queued. The queue is ordered by enqueue sequence, so they return to its front. */
  requeue(orderIds: string[]): void;
  /** Every queued order of the device, switched to delivered (deliveries + 1). */
  takeAllQueued(deviceId: string, at: number): OrderRecord[];
  listOrders(deviceId: string, state: OrderState | undefined, limit: number): OrderRecord[];
  getOrder(orderId: string): OrderRecord | null;
  /** Queued and in-flight orders of every device (cheap: the scrape of a metrics endpoint). */
  countOpenOrders(): { queued: number; inFlight: number };
  /**
   * Stores the rows. A data row whose digest is among the last `dedupeWindow` digests of this
   * device's stored data batches (or earlier in `data`) is skipped: it is a batch the device sent
   * again because the confirmation was lost (see docs/reliability.md). Log rows likewise, against
   * the device's log batches (a device resends an unacknowledged log batch after a reconnect).
   * Older digests are forgotten, so the tables stay bounded.
   */
  insertUploads(deviceId: string, data: UploadRow[], logs: UploadRow[]): void;
  /** Newest first. */
  dataRows(deviceId: string): Iterable<UploadRow>;
  logRows(deviceId: string): Iterable<UploadRow>;
  getDevice(deviceId: string): { config: DeviceConfig | null; pathpoints: PathpointDeclaration[] };
  putConfig(deviceId: string, config: DeviceConfig): void;
  putPathpoints(deviceId: string, declarations: PathpointDeclaration[]): void;
  /** Stores the receipt unless one exists; returns the stored (first) receipt's time. */
  insertReceipt(deviceId: string, uuid: string, at: number): number;
  /** Receipt times of the device's message orders, by uuid. */
  receipts(deviceId: string, uuids: string[]): Map<string, number>;
  /** Live BAOBs of the device, by key. */
  baobs(deviceId: string): BaobInfo[];
  /** A live BAOB with its bytes. */
  baob(deviceId: string, key: string): Baob | null;
  /** Version of the BAOB, live or deleted (a tombstone), or null if it never existed. */
  baobVersion(deviceId: string, key: string): { version: number; deleted: boolean } | null;
  /** Inserts or replaces the live BAOB. */
  putBaob(deviceId: string, baob: Baob): void;
  /** Live → tombstone (bytes dropped, version kept); false if not live. */
  deleteBaob(deviceId: string, key: string, at: number): boolean;
  close(): void;
}

/** What an order source needs of its backend; a networked one (PostgreSQL) answers with promises. */
export type OrderQueueTables = {
  [K in 'takeNextQueued' | 'settle' | 'requeue']: (...args: Parameters<Tables[K]>) => ReturnType<Tables[K]> | Promise<ReturnType<Tables[K]>>;
};

/** One device's orders from a table-backed queue (SQLite, memory, PostgreSQL). */
export class LocalOrderSource implements OrderSource {
  private readonly inFlight = new Set<string>();
  private listener: (() => void) | null = null;
  closed = false;

  constructor(
    private readonly tables: OrderQueueTables,
    private readonly deviceId: string,
    private readonly detach: (source: LocalOrderSource) => void,
  ) {}

  async next(): Promise<OrderRecord | null> {
    if (this.closed) return null;
    const order = await this.tables.takeNextQueued(this.deviceId);
    if (order && this.closed) {
      // Closed while the backend was answering: close() did not know this one, so it goes back here.
      await this.tables.requeue([order.id]);
      return null;
    }
    if (order) this.inFlight.add(order.id);
    return order;
  }

  async settle(orderId: string, outcome: Settlement, reason?: string): Promise<boolean> {
    if (this.closed || !this.inFlight.has(orderId)) return false;
    const settled = await this.tables.settle(orderId, outcome, reason ?? null, Date.now());
    // Only after the write: if it throws, the order stays ours and close() requeues it.
    this.inFlight.delete(orderId);
    return settled;
  }

  onAvailable(listener: () => void): void {
    this.listener = listener;
  }

  notify(): void {
    if (!this.closed) this.listener?.();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener = null;
    await this.tables.requeue([...this.inFlight]);
    this.inFlight.clear();
    this.detach(this);
  }
}

/** The open order source of each device (at most one): opening another closes the old one first. */
export class OrderSources {
  private readonly sources = new Map<string, LocalOrderSource>();

  constructor(private readonly tables: OrderQueueTables) {}

  async open(deviceId: string): Promise<OrderSource> {
    await this.sources.get(deviceId)?.close();
    const source = new LocalOrderSource(this.tables, deviceId, (s) => {
      if (this.sources.get(deviceId) === s) this.sources.delete(deviceId);
    });
    this.sources.set(deviceId, source);
    return source;
  }

  /** New orders for the device: its open source (if any) is told. */
  notify(deviceId: string): void {
    this.sources.get(deviceId)?.notify();
  }

  /** Closes every source (their in-flight orders requeued). */
  async closeAll(): Promise<void> {
    for (const source of [...this.sources.values()]) await source.close();
  }
}

/** An order row as SQLite and PostgreSQL return it (times in Unix ms, sections as MiniJSON). */
export interface OrderRow {
  id: string;
  device_id: string;
  sections: Uint8Array;
  state: OrderState;
  enqueued_at: number;
  settled_at: number | null;
  reason: string | null;
  deliveries: number;
}

export const orderFromRow = (r: OrderRow): OrderRecord => ({
  id: r.id,
  deviceId: r.device_id,
  sections: decode(r.sections) as Section[],
  state: r.state,
  enqueuedAt: r.enqueued_at,
  settledAt: r.settled_at,
  reason: r.reason,
  deliveries: r.deliveries,
});

export class LocalStore implements Store {
  private readonly sources: OrderSources;

  constructor(private readonly tables: Tables) {
    this.sources = new OrderSources(tables);
  }

  async enqueueOrder(deviceId: string, sections: Section[]): Promise<string> {
    const id = randomUUID();
    this.tables.insertOrder({ id, deviceId, sections, state: 'queued', enqueuedAt: Date.now(), settledAt: null, reason: null, deliveries: 0 });
    this.sources.notify(deviceId);
    return id;
  }

  openOrderSource(deviceId: string, _options: { prefetch: number }): Promise<OrderSource> {
    // The session enforces the window itself; prefetch matters to broker-backed stores.
    return this.sources.open(deviceId);
  }

  async takeQueuedOrders(deviceId: string): Promise<OrderRecord[]> {
    return this.tables.takeAllQueued(deviceId, Date.now());
  }

  async listOrders(deviceId: string, options: ListOptions & { state?: OrderState } = {}): Promise<OrderRecord[]> {
    return this.withReceipts(deviceId, this.tables.listOrders(deviceId, options.state, options.limit ?? DEFAULT_LIST_LIMIT));
  }

  async countOpenOrders(): Promise<{ queued: number; inFlight: number }> {
    return this.tables.countOpenOrders();
  }

  async getOrder(orderId: string): Promise<OrderRecord | null> {
    const order = this.tables.getOrder(orderId);
    return order && this.withReceipts(order.deviceId, [order])[0];
  }

  async recordMessageReceipt(deviceId: string, uuid: string, at = Date.now()): Promise<number> {
    return this.tables.insertReceipt(deviceId, uuid, at);
  }

  /** Adds `messages` (uuid, receipt time or null) to the orders that have message orders. */
  private withReceipts(deviceId: string, orders: OrderRecord[]): OrderRecord[] {
    const uuids = orders.flatMap(messageUuids);
    if (!uuids.length) return orders;
    const received = this.tables.receipts(deviceId, uuids);
    return orders.map((order) => {
      const own = messageUuids(order);
      if (!own.length) return order;
      const messages: MessageReceipt[] = own.map((uuid) => ({ uuid, receivedAt: received.get(uuid) ?? null }));
      return { ...order, messages };
    });
  }

  /**
   * Merges what is known about an order from elsewhere (a broker-backed store's audit trail) into
   * the history: inserts it when unknown, never moves a settled order back to queued/in-flight
   * (events from different gateways arrive in any order), keeps the earliest enqueue time.
   */
  async recordOrder(order: OrderRecord): Promise<void> {
    const old = this.tables.getOrder(order.id);
    if (!old) return this.tables.putOrder(order);
    const rank = (s: OrderState) => (s === 'queued' ? 0 : s === 'in-flight' ? 1 : 2);
    const newer = rank(order.state) > rank(old.state) || (rank(order.state) === rank(old.state) && rank(order.state) < 2);
    this.tables.putOrder({
      ...old,
      ...(newer ? { state: order.state, settledAt: order.settledAt, reason: order.reason } : {}),
      enqueuedAt: Math.min(old.enqueuedAt, order.enqueuedAt),
      deliveries: Math.max(old.deliveries, order.deliveries),
    });
  }

  async ingest(deviceId: string, uploads: Uploads): Promise<void> {
    const receivedAt = Date.now();
    const row = (payload: Uint8Array): UploadRow => ({ receivedAt, payload, digest: createHash('sha256').update(payload).digest() });
    const data = (uploads.data ?? []).map((b) => row(b.encoded ?? encode(b.series)));
    const logs = (uploads.logs ?? []).map((records) => row(encode(records)));
    if (data.length || logs.length) this.tables.insertUploads(deviceId, data, logs);
  }

  async readData(deviceId: string, options: ListOptions & { path?: string } = {}): Promise<StoredSeries[]> {
    return newest(this.tables.dataRows(deviceId), options.limit, (row) =>
      (decode(row.payload) as PathpointSeries[])
        .filter((s) => options.path === undefined || s.path === options.path)
        .map((s) => ({ ...s, receivedAt: row.receivedAt })),
    );
  }

  async readLogs(deviceId: string, options: ListOptions = {}): Promise<StoredLogRecord[]> {
    return newest(this.tables.logRows(deviceId), options.limit, (row) =>
      (decode(row.payload) as LogRecord[]).map((r) => ({ ...r, receivedAt: row.receivedAt })),
    );
  }

  async declarePathpoints(deviceId: string, declarations: PathpointDeclaration[], options: { authoritative?: boolean } = {}): Promise<PathpointDeclaration[]> {
    const known = new Map(this.tables.getDevice(deviceId).pathpoints.map((d) => [d.path, d]));
    for (const d of declarations) {
      if (options.authoritative || !known.has(d.path)) known.set(d.path, { path: d.path, storage_level: d.storage_level });
    }
    const merged = [...known.values()];
    this.tables.putPathpoints(deviceId, merged);
    return merged;
  }

  async readPathpointDeclarations(deviceId: string): Promise<PathpointDeclaration[]> {
    return this.tables.getDevice(deviceId).pathpoints;
  }

  async getDeviceConfig(deviceId: string): Promise<DeviceConfig> {
    return this.tables.getDevice(deviceId).config ?? defaultDeviceConfig(deviceId);
  }

  async updateDeviceConfig(deviceId: string, patch: DeviceConfigPatch): Promise<DeviceConfig> {
    const config = applyConfigPatch(await this.getDeviceConfig(deviceId), patch);
    this.tables.putConfig(deviceId, config);
    return config;
  }

  async listBaobs(deviceId: string): Promise<BaobInfo[]> {
    return this.tables.baobs(deviceId);
  }

  async getBaob(deviceId: string, key: string): Promise<Baob | null> {
    return this.tables.baob(deviceId, key);
  }

  // Each BAOB method below reads and writes synchronously: no other call interleaves.
  async offerBaob(deviceId: string, key: string, data: Uint8Array, version: number): Promise<BaobOffer> {
    checkBaob(key, version);
    const current = this.tables.baobVersion(deviceId, key);
    if (!current || current.deleted) return { stored: false, reason: 'unknown' };
    if (version <= current.version) return { stored: false, reason: 'not-newer', current: infoOf(this.tables.baob(deviceId, key)!) };
    return { stored: true, info: this.storeBaob(deviceId, key, data, version) };
  }

  async publishBaob(deviceId: string, key: string, data: Uint8Array): Promise<BaobInfo> {
    checkBaob(key, 1);
    return this.storeBaob(deviceId, key, data, (this.tables.baobVersion(deviceId, key)?.version ?? 0) + 1);
  }

  async deleteBaob(deviceId: string, key: string): Promise<boolean> {
    return this.tables.deleteBaob(deviceId, key, Date.now());
  }

  private storeBaob(deviceId: string, key: string, data: Uint8Array, version: number): BaobInfo {
    const baob: Baob = { key, version, size: data.length, updatedAt: Date.now(), data };
    this.tables.putBaob(deviceId, baob);
    return infoOf(baob);
  }

  async close(): Promise<void> {
    await this.sources.closeAll();
    this.tables.close();
  }
}

export const messageUuids = (order: OrderRecord): string[] =>
  order.sections.flatMap((s) => s.orders.flatMap((o) => (o.type === 'message' && typeof o.uuid === 'string' ? [o.uuid] : [])));

export const infoOf = ({ key, version, size, updatedAt }: BaobInfo): BaobInfo => ({ key, version, size, updatedAt });

export function checkBaob(key: string, version: number): void {
  const problem = baobProblem(key, version);
  if (problem) throw new PayloadError(problem);
}

/** The last `limit` entries, oldest first, from rows read newest first. */
function newest<T>(rows: Iterable<UploadRow>, limit = DEFAULT_LIST_LIMIT, expand: (row: UploadRow) => T[]): T[] {
  const out: T[] = [];
  for (const row of rows) {
    const entries = expand(row);
    for (let i = entries.length - 1; i >= 0 && out.length < limit; i--) out.push(entries[i]);
    if (out.length >= limit) break;
  }
  return out.reverse();
}
