/**
 * Storage behind the reference server. The protocol code sees orders only through a per-device
 * OrderSource (pull the next one, settle, hand back on disconnect, be told when more arrive),
 * so a broker fits behind it: one durable queue per device consumed with prefetch = window,
 * `settle` = ack, `close` = channel close (the broker requeues what is unacked).
 * Every method is async so that a networked store fits too.
 */
import type { CultureContext, DeviceConfig, LogRecord, PathpointDeclaration, PathpointSeries, Section } from '../../protocol/index.js';

/** The device configuration's shape is the protocol's (GET /v1/device, spec §9). */
export type { CultureContext, DeviceConfig };

/**
 * queued → in-flight (pushed over NGTT) → confirmed | rejected; in-flight goes back to queued
 * when the connection drops. queued → delivered when an HTTPS poll returns it (spec §9).
 */
export type OrderState = 'queued' | 'in-flight' | 'confirmed' | 'rejected' | 'delivered';
export const ORDER_STATES: readonly OrderState[] = ['queued', 'in-flight', 'confirmed', 'rejected', 'delivered'];

export interface OrderRecord {
  /** Stable id (a UUID); travels as `id` on each section of the ORDER payload. */
  id: string;
  deviceId: string;
  sections: Section[];
  state: OrderState;
  /** Unix milliseconds. */
  enqueuedAt: number;
  settledAt: number | null;
  /** Why the device rejected it, when it said. */
  reason: string | null;
  /** How many times it has been handed out (NGTT pushes and HTTP polls). */
  deliveries: number;
  /**
   * Its message orders (spec §6), when it has any, with the time the device said it received
   * each one (`POST /v1/device/orders/message/<uuid>`), or null while it has not.
   */
  messages?: MessageReceipt[];
}

export interface MessageReceipt {
  uuid: string;
  /** Unix milliseconds of the first receipt, or null: not received yet. */
  receivedAt: number | null;
}

export type Settlement = 'confirmed' | 'rejected';

/** One device's orders, as the NGTT session consumes them. At most one is open per device. */
export interface OrderSource {
  /** Takes the next queued order (now in flight), or null when none is waiting. */
  next(): Promise<OrderRecord | null>;
  /** Settles an order this source handed out, for good. False if it was not in flight here. */
  settle(orderId: string, outcome: Settlement, reason?: string): Promise<boolean>;
  /** Called (without arguments) whenever new orders may be waiting. */
  onAvailable(listener: () => void): void;
  /** Puts every order still in flight back at the front of the queue; the source is then dead. */
  close(): Promise<void>;
  /**
   * Optional: called when the store takes the source away (a broker-backed store: the device
   * connected at another gateway). The connection must then close (and close the source).
   */
  onRevoked?(listener: (reason: Error) => void): void;
}

/** A batch of pathpoint data as received; `encoded` is its MiniJSON, when the receiver has it. */
export interface DataBatch {
  series: PathpointSeries[];
  encoded?: Uint8Array;
}

export interface Uploads {
  data?: DataBatch[];
  logs?: LogRecord[][];
}

export interface StoredSeries extends PathpointSeries {
  /** Unix milliseconds when the server stored it. */
  receivedAt: number;
}

export interface StoredLogRecord extends LogRecord {
  receivedAt: number;
}


export type DeviceConfigPatch = Partial<Omit<DeviceConfig, 'device_id' | 'culture_context'>> & {
  culture_context?: Partial<CultureContext>;
};

/** A BAOB's metadata (spec §11): a key with a byte value whose version grows by one per change. */
export interface BaobInfo {
  key: string;
  version: number;
  /** Bytes of the value. */
  size: number;
  /** Unix milliseconds of the last change. */
  updatedAt: number;
}

export interface Baob extends BaobInfo {
  data: Uint8Array;
}

/**
 * What became of a device's upload (`offerBaob`): stored, or refused because the store has no
 * such BAOB (the device should delete it, spec §11) or has this version or a newer one.
 */
export type BaobOffer = { stored: true; info: BaobInfo } | { stored: false; reason: 'unknown' } | { stored: false; reason: 'not-newer'; current: BaobInfo };

export interface ListOptions {
  /** Most recent entries, at most this many (default 1000). */
  limit?: number;
}

export interface Store {
  /** Appends an order to the device's queue; returns its id. Sections must already be valid. */
  enqueueOrder(deviceId: string, sections: Section[]): Promise<string>;
  /** Opens the device's order source for one NGTT connection; an older open one is closed first. */
  openOrderSource(deviceId: string, options: { prefetch: number }): Promise<OrderSource>;
  /** HTTPS poll: every queued order, marked delivered at once (spec §9). */
  takeQueuedOrders(deviceId: string): Promise<OrderRecord[]>;
  listOrders(deviceId: string, options?: ListOptions & { state?: OrderState }): Promise<OrderRecord[]>;
  getOrder(orderId: string): Promise<OrderRecord | null>;

  /** Stores uploads durably (all of them or none) before resolving. */
  ingest(deviceId: string, uploads: Uploads): Promise<void>;
  readData(deviceId: string, options?: ListOptions & { path?: string }): Promise<StoredSeries[]>;
  readLogs(deviceId: string, options?: ListOptions): Promise<StoredLogRecord[]>;

  /** The device received its message order `uuid`. Idempotent: resolves to the first receipt's time. */
  recordMessageReceipt(deviceId: string, uuid: string): Promise<number>;

  /**
   * Merges pathpoint declarations into what the server knows of the device and resolves to the
   * whole list. A device adds pathpoints it declares for the first time; the storage level of
   * a known one stays the server's (spec §9: the answer tells the device which to use) unless
   * `authoritative` (the operator) sets it.
   */
  declarePathpoints(deviceId: string, declarations: PathpointDeclaration[], options?: { authoritative?: boolean }): Promise<PathpointDeclaration[]>;
  readPathpointDeclarations(deviceId: string): Promise<PathpointDeclaration[]>;
  getDeviceConfig(deviceId: string): Promise<DeviceConfig>;
  updateDeviceConfig(deviceId: string, patch: DeviceConfigPatch): Promise<DeviceConfig>;

  /** The device's BAOBs (spec §11), without their bytes, by key. */
  listBaobs(deviceId: string): Promise<BaobInfo[]>;
  getBaob(deviceId: string, key: string): Promise<Baob | null>;
  /** A device's upload: stored only when the store holds `key` at a lower version (spec §11). */
  offerBaob(deviceId: string, key: string, data: Uint8Array, version: number): Promise<BaobOffer>;
  /** The operator's new value: version one above the current (or deleted) one, 1 for a new key. */
  publishBaob(deviceId: string, key: string, data: Uint8Array): Promise<BaobInfo>;
  /** Removes the BAOB (devices holding it are told to delete it); its version is remembered. False if there was none. */
  deleteBaob(deviceId: string, key: string): Promise<boolean>;

  /**
   * Optional, for stores on a network (PostgreSQL, RabbitMQ): false while a link the store needs
   * is down. The server then refuses NGTT sessions and answers the device HTTPS API with 503,
   * so devices keep their data and logs and retry with their normal backoff (issue #16).
   */
  available?(): boolean;
  /** Optional: called with the new value whenever `available()` changes. Returns an unsubscribe function. */
  onAvailabilityChange?(listener: (available: boolean, reason?: string) => void): () => void;
  /** Optional (metrics): how many orders are queued and in flight now, over all devices. */
  countOpenOrders?(): Promise<{ queued: number; inFlight: number }>;

  close(): Promise<void>;
}

export const DEFAULT_LIST_LIMIT = 1000;

export function defaultDeviceConfig(deviceId: string): DeviceConfig {
  return {
    device_id: deviceId,
    verbose_name: deviceId,
    facets: [],
    culture_context: { language: 'en', timezone: 'UTC', units: 'metric' },
    slave_devices: [],
  };
}

export function applyConfigPatch(config: DeviceConfig, patch: DeviceConfigPatch): DeviceConfig {
  return {
    ...config,
    ...patch,
    device_id: config.device_id,
    culture_context: { ...config.culture_context, ...patch.culture_context },
  };
}
