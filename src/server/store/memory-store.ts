/** An in-memory Store for tests and throwaway runs: same semantics as SQLite, nothing survives. */
import type { PathpointDeclaration } from '../../protocol/index.js';
import { checkedDedupeWindow, LocalStore, type Tables, type UploadRow } from './local-store.js';
import type { Baob, BaobInfo, DeviceConfig, OrderRecord, OrderState, Settlement } from './types.js';

interface Entry {
  seq: number;
  order: OrderRecord;
}

class MemoryTables implements Tables {
  private seq = 0;
  private readonly orders = new Map<string, Entry>();
  /** Per device, every order in enqueue sequence. */
  private readonly byDevice = new Map<string, Entry[]>();
  private readonly data = new Map<string, UploadRow[]>();
  private readonly logs = new Map<string, UploadRow[]>();
  private readonly dataDigests: DigestWindow;
  private readonly logDigests: DigestWindow;
  private readonly devices = new Map<string, { config: DeviceConfig | null; pathpoints: PathpointDeclaration[] }>();
  /** deviceId → uuid → first receipt time. */
  private readonly receiptsByDevice = new Map<string, Map<string, number>>();
  /** deviceId → key → BAOB; a deleted one stays as a tombstone (no data). */
  private readonly baobsByDevice = new Map<string, Map<string, { baob: Baob; deleted: boolean }>>();

  constructor(dedupeWindow: number) {
    this.dataDigests = new DigestWindow(dedupeWindow);
    this.logDigests = new DigestWindow(dedupeWindow);
  }

  insertOrder(order: OrderRecord): void {
    const entry = { seq: ++this.seq, order: structuredClone(order) };
    this.orders.set(order.id, entry);
    listFor(this.byDevice, order.deviceId).push(entry);
  }

  putOrder(order: OrderRecord): void {
    const entry = this.orders.get(order.id);
    if (entry) entry.order = structuredClone(order);
    else this.insertOrder(order);
  }

  takeNextQueued(deviceId: string): OrderRecord | null {
    const entry = this.byDevice.get(deviceId)?.find((e) => e.order.state === 'queued');
    if (!entry) return null;
    entry.order.state = 'in-flight';
    entry.order.deliveries++;
    return structuredClone(entry.order);
  }

  settle(orderId: string, outcome: Settlement, reason: string | null, at: number): boolean {
    const entry = this.orders.get(orderId);
    if (!entry || entry.order.state !== 'in-flight') return false;
    Object.assign(entry.order, { state: outcome, reason, settledAt: at });
    return true;
  }

  requeue(orderIds: string[]): void {
    for (const id of orderIds) {
      const entry = this.orders.get(id);
      if (entry?.order.state === 'in-flight') entry.order.state = 'queued';
    }
  }

  takeAllQueued(deviceId: string, at: number): OrderRecord[] {
    const taken = (this.byDevice.get(deviceId) ?? []).filter((e) => e.order.state === 'queued');
    for (const e of taken) Object.assign(e.order, { state: 'delivered', settledAt: at, deliveries: e.order.deliveries + 1 });
    return taken.map((e) => structuredClone(e.order));
  }

  listOrders(deviceId: string, state: OrderState | undefined, limit: number): OrderRecord[] {
    const all = (this.byDevice.get(deviceId) ?? []).filter((e) => state === undefined || e.order.state === state);
    return all.slice(-limit).map((e) => structuredClone(e.order));
  }

  countOpenOrders(): { queued: number; inFlight: number } {
    let queued = 0;
    let inFlight = 0;
    for (const { order } of this.orders.values()) {
      if (order.state === 'queued') queued++;
      else if (order.state === 'in-flight') inFlight++;
    }
    return { queued, inFlight };
  }

  getOrder(orderId: string): OrderRecord | null {
    const entry = this.orders.get(orderId);
    return entry ? structuredClone(entry.order) : null;
  }

  insertUploads(deviceId: string, data: UploadRow[], logs: UploadRow[]): void {
    // Copies: the payload may be a view of a socket chunk that is reused.
    const copy = (r: UploadRow) => ({ ...r, payload: Uint8Array.from(r.payload) });
    listFor(this.data, deviceId).push(...this.dataDigests.fresh(deviceId, data).map(copy));
    listFor(this.logs, deviceId).push(...this.logDigests.fresh(deviceId, logs).map(copy));
  }

  dataRows(deviceId: string): Iterable<UploadRow> {
    return [...(this.data.get(deviceId) ?? [])].reverse();
  }

  logRows(deviceId: string): Iterable<UploadRow> {
    return [...(this.logs.get(deviceId) ?? [])].reverse();
  }

  getDevice(deviceId: string): { config: DeviceConfig | null; pathpoints: PathpointDeclaration[] } {
    return structuredClone(this.devices.get(deviceId) ?? { config: null, pathpoints: [] });
  }

  putConfig(deviceId: string, config: DeviceConfig): void {
    this.devices.set(deviceId, { ...this.getDevice(deviceId), config: structuredClone(config) });
  }

  putPathpoints(deviceId: string, declarations: PathpointDeclaration[]): void {
    this.devices.set(deviceId, { ...this.getDevice(deviceId), pathpoints: structuredClone(declarations) });
  }

  insertReceipt(deviceId: string, uuid: string, at: number): number {
    let mine = this.receiptsByDevice.get(deviceId);
    if (!mine) this.receiptsByDevice.set(deviceId, (mine = new Map()));
    if (!mine.has(uuid)) mine.set(uuid, at);
    return mine.get(uuid)!;
  }

  receipts(deviceId: string, uuids: string[]): Map<string, number> {
    const mine = this.receiptsByDevice.get(deviceId);
    return new Map(uuids.flatMap((u) => (mine?.has(u) ? [[u, mine.get(u)!] as const] : [])));
  }

  baobs(deviceId: string): BaobInfo[] {
    const live = [...(this.baobsByDevice.get(deviceId)?.values() ?? [])].filter((e) => !e.deleted);
    return live.map(({ baob: { key, version, size, updatedAt } }) => ({ key, version, size, updatedAt })).sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  baob(deviceId: string, key: string): Baob | null {
    const entry = this.baobsByDevice.get(deviceId)?.get(key);
    return entry && !entry.deleted ? { ...entry.baob, data: Uint8Array.from(entry.baob.data) } : null;
  }

  baobVersion(deviceId: string, key: string): { version: number; deleted: boolean } | null {
    const entry = this.baobsByDevice.get(deviceId)?.get(key);
    return entry ? { version: entry.baob.version, deleted: entry.deleted } : null;
  }

  putBaob(deviceId: string, baob: Baob): void {
    let mine = this.baobsByDevice.get(deviceId);
    if (!mine) this.baobsByDevice.set(deviceId, (mine = new Map()));
    mine.set(baob.key, { baob: { ...baob, data: Uint8Array.from(baob.data) }, deleted: false });
  }

  deleteBaob(deviceId: string, key: string, at: number): boolean {
    const entry = this.baobsByDevice.get(deviceId)?.get(key);
    if (!entry || entry.deleted) return false;
    entry.deleted = true;
    entry.baob = { ...entry.baob, data: new Uint8Array(0), size: 0, updatedAt: at };
    return true;
  }

  close(): void {}
}

/** The hex digests of each device's last `window` batches of one kind (data, logs), oldest first. */
class DigestWindow {
  private readonly digests = new Map<string, Set<string>>();

  constructor(private readonly window: number) {}

  /** The rows not stored before (nor earlier in `rows`), their digests remembered. */
  fresh(deviceId: string, rows: UploadRow[]): UploadRow[] {
    let seen = this.digests.get(deviceId);
    if (!seen) this.digests.set(deviceId, (seen = new Set()));
    const fresh = rows.filter((r) => {
      if (!r.digest) return true;
      const key = Buffer.from(r.digest).toString('hex');
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    // A Set iterates in insertion order: the first entries are the oldest.
    for (const old of seen) {
      if (seen.size <= this.window) break;
      seen.delete(old);
    }
    return fresh;
  }
}

function listFor<T>(map: Map<string, T[]>, key: string): T[] {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  return list;
}

export interface MemoryStoreOptions {
  /** Data batches, and log batches, per device remembered to recognise a re-sent one. Default DEFAULT_DEDUPE_WINDOW. */
  dedupeWindow?: number;
}

export function createMemoryStore(options: MemoryStoreOptions = {}): LocalStore {
  return new LocalStore(new MemoryTables(checkedDedupeWindow(options.dedupeWindow)));
}
