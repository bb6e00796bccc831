/**
 * The server's Store on RabbitMQ, for a fleet of stateless gateways (issue #8, docs/rabbitmq.md).
 *
 *   const store = await openRabbitStore({ url, prefix: 'ngtt', local: openSqliteStore(file), sink: true });
 *   const server = await startServer({ tls, store });
 *
 * What the broker holds (shared by every gateway of the prefix):
 *   - orders: one queue per device; `openOrderSource` consumes it with prefetch = the NGTT window
 *     (single active consumer), `settle` acks, `close` hands the unsettled back;
 *     `takeQueuedOrders` (HTTPS poll) takes every ready message with basic.get;
 *   - uploads: `ingest` resolves once the broker confirmed the pathpoint data and the logs (so
 *     the session's DATA_STREAM_CONFIRM follows the broker's confirm).
 *
 * With a shared `local` (PostgresStore, issue #16) no process keeps state of its own: every
 * gateway reads and writes config, declarations, BAOBs and its order events in the database,
 * and any number of sinks store data, logs and the history there, exactly once by the
 * database's unique batch keys. What follows describes a LocalStore (SQLite or memory):
 *
 * What a broker cannot answer comes from `local` (a LocalStore: SQLite or memory):
 *   - order history (listOrders, getOrder): every enqueue, settle and poll is published to
 *     `<prefix>.orders.settled` (outcomes `queued`, `confirmed`, `rejected`, `delivered`,
 *     `invalid`) and merged into `local` (LocalStore.recordOrder). A gateway with `sink: true`
 *     drains the durable `<prefix>.orders.settled` queue (complete history, survives restarts);
 *     any other gateway binds its own exclusive queue to the exchange (every event from its
 *     start on). This gateway's own enqueues and settles are recorded at once as well.
 *   - data and logs (readData, readLogs): only in `local` of a process that runs the sink
 *     (`sink: true`): it consumes `<prefix>.pathpoints` and `<prefix>.logs` into `local`.
 *   - device config and pathpoint declarations: `local` only, i.e. per gateway.
 *   - BAOBs: in `local` of the process that runs the sink; the other gateways reach them by
 *     request/reply over the broker (baob-rpc.ts). Without a sink, BAOB requests fail (503).
 *   - message receipts: recorded in `local` and published as a `received` event on
 *     `<prefix>.orders.settled`, merged into every gateway's history like the order events.
 * A broker-held order that this store has not seen an event for is shown as 'queued' until settled.
 *
 * Take-over: opening a device's source announces "device X connected at gateway G" on the
 * `<prefix>.control` fanout; a gateway still holding a source for X revokes it (OrderSource
 * onRevoked → the session closes that connection), so the single active consumer passes to G
 * at once instead of after the old connection's idle timeout.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { decode, encode } from '../../minijson/index.js';
import { parseSections, PayloadError, type PathpointDeclaration, type Section } from '../../protocol/index.js';
import { Availability } from '../store/availability.js';
import type { LocalStore } from '../store/local-store.js';
import type {
  Baob,
  BaobInfo,
  BaobOffer,
  DeviceConfig,
  DeviceConfigPatch,
  ListOptions,
  OrderRecord,
  OrderSource,
  OrderState,
  Settlement,
  Store,
  StoredLogRecord,
  StoredSeries,
  Uploads,
} from '../store/types.js';
import { BaobRpcClient, BaobRpcServer, type BaobStore } from './baob-rpc.js';
import { ManagedChannel } from './channel.js';
import { BrokerConnection, type BrokerConnectionOptions, type Logger } from './connection.js';
import { openRabbitBackbone, type RabbitBackbone } from './index.js';
import { earlierDeliveries, OrderQueues, UnknownOrderError, type OrderDelivery, type OrderQueueSource as BrokerSource } from './order-queue.js';
import { Sink } from './sink.js';
import { checkDeviceId, HEADER_DELIVERIES, HEADER_DEVICE, HEADER_MESSAGE, HEADER_OUTCOME, HEADER_REASON, type TopologyOptions } from './topology.js';

/**
 * What keeps a gateway's history, config and declarations: a LocalStore (SQLite, memory: this
 * process only) or a PostgresStore (`shared`: the same database for every process of the fleet).
 */
export type HistoryStore = Store &
  Pick<LocalStore, 'recordOrder'> & {
    recordMessageReceipt(deviceId: string, uuid: string, at?: number): Promise<number>;
    /** True when every gateway and sink of the fleet uses this same store (PostgreSQL). */
    readonly shared?: boolean;
  };

export interface RabbitStoreOptions extends BrokerConnectionOptions, TopologyOptions {
  /**
   * Order history, config, declarations, BAOBs and (with `sink`) data and logs. Closed with the
   * store. With a shared one (PostgresStore) every gateway reads and writes it directly and any
   * number of sinks may run; with a LocalStore these live in each process (see the file comment).
   */
  local: HistoryStore;
  /**
   * Run the sink in this process: consume `<prefix>.pathpoints`, `<prefix>.logs` and the durable
   * `<prefix>.orders.settled` into `local`. With a shared `local` run as many as you like
   * (competing consumers; PostgreSQL's unique batch keys make storage exactly once); with a
   * LocalStore exactly one process of a fleet should. Default false.
   */
  sink?: boolean;
  /**
   * AMQP connections for the devices' order sources (one channel per connected device; RabbitMQ
   * allows 2047 channels per connection by default): ⌈devices per gateway / 2 000⌉. Each source
   * goes to the connection with the fewest. Default 1.
   */
  orderConnections?: number;
  /** Most messages one HTTPS poll takes from a device's queue. Default 1000. */
  pollLimit?: number;
  /** How long a gateway without the sink waits for the sink's answer to a BAOB request. Default 10 000 ms. */
  baobTimeoutMs?: number;
  logger?: Logger;
}

const RANK_TERMINAL = new Set<string>(['confirmed', 'rejected', 'delivered']);

export class RabbitStore implements Store {
  private readonly sources = new Map<string, BrokerOrderSource>();
  /** Where order sources are opened; the first is the backbone's own. */
  private readonly pool: { orders: OrderQueues; open: number; conn: BrokerConnection }[] = [];
  private readonly seenUploads = new RecentIds(10_000);
  /** Broker link and, with a shared store, the database link: the server refuses devices while one is down. */
  private readonly health = new Availability();
  private sink: Sink | null = null;
  private history: ManagedChannel | null = null;
  /** The sink's local store, directly (in the sink) or by request/reply (everywhere else). */
  private baobs: BaobStore;
  private baobServer: BaobRpcServer | null = null;
  private baobClient: BaobRpcClient | null = null;
  /** Identifies this store on `<prefix>.control`. */
  readonly gatewayId = randomUUID();
  private closing: Promise<void> | null = null;

  private constructor(
    readonly backbone: RabbitBackbone,
    readonly local: HistoryStore,
    private readonly opts: RabbitStoreOptions,
  ) {
    this.pool.push({ orders: backbone.orders, open: 0, conn: backbone.connection });
    const conn = backbone.connection;
    conn.on('disconnected', (err: Error) => this.health.set('broker', false, err.message));
    conn.on('connected', () => this.health.set('broker', true));
    if (local.available && !local.available()) this.health.set('database', false);
    local.onAvailabilityChange?.((ok, reason) => this.health.set('database', ok, reason));
    if (opts.sink || local.shared) {
      this.baobs = local;
    } else {
      this.baobClient = new BaobRpcClient(backbone.connection, { prefix: backbone.topology.prefix, timeoutMs: opts.baobTimeoutMs });
      this.baobs = this.baobClient;
    }
  }

  static async open(opts: RabbitStoreOptions): Promise<RabbitStore> {
    const backbone = await openRabbitBackbone({ ...opts, audit: 'all' });
    const store = new RabbitStore(backbone, opts.local, opts);
    try {
      const extra = Math.max(1, Math.floor(opts.orderConnections ?? 1)) - 1;
      for (let i = 1; i <= extra; i++) {
        const conn = await BrokerConnection.open({ ...opts, connectionName: `${opts.connectionName ?? 'ngtt'}-orders-${i}` });
        const orders = new OrderQueues(conn, { topology: backbone.topology, publisher: backbone.publisher, audit: 'all' });
        store.pool.push({ orders, open: 0, conn });
      }
      await store.startHistory();
      if (opts.sink) {
        store.sink = await Sink.start(
          backbone.connection,
          {
            onPathpoints: (deviceId, series, meta) => store.sinkUpload(meta.messageId, () => store.local.ingest(deviceId, { data: [{ series }] })),
            onLogs: (deviceId, records, meta) => store.sinkUpload(meta.messageId, () => store.local.ingest(deviceId, { logs: [records] })),
            onInvalid: (kind, err) => backbone.connection.logger.warn({ err, kind }, 'sink dropped an undecodable batch'),
          },
          { topology: backbone.topology },
        );
        // Gateways on a shared store read BAOBs there themselves; otherwise they ask this sink.
        if (!opts.local.shared) store.baobServer = await BaobRpcServer.start(backbone.connection, { prefix: backbone.topology.prefix, store: store.local });
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  get topology() {
    return this.backbone.topology;
  }

  async enqueueOrder(deviceId: string, sections: Section[]): Promise<string> {
    checkId(deviceId);
    const id = await this.backbone.orders.enqueueOrder(deviceId, sections);
    const enqueuedAt = Date.now();
    await this.recordHistory({ id, deviceId, sections, state: 'queued', enqueuedAt, settledAt: null, reason: null, deliveries: 0 });
    // Tells the other gateways' history; the order itself is already safe on the broker.
    await this.publishEvent(deviceId, id, encode(sections), 'queued');
    return id;
  }

  async openOrderSource(deviceId: string, options: { prefetch: number }): Promise<OrderSource> {
    checkId(deviceId);
    await this.sources.get(deviceId)?.close();
    // Another gateway may still hold a stale connection of this device (it has not noticed the
    // drop yet): tell it to let go, so the queue's single active consumer passes to us now.
    await this.publishControl({ type: 'connected', deviceId, gateway: this.gatewayId });
    const slot = this.pool.reduce((best, p) => (p.open < best.open ? p : best));
    slot.open++;
    let inner: BrokerSource;
    try {
      inner = await slot.orders.openOrderSource(deviceId, { window: options.prefetch });
    } catch (err) {
      slot.open--;
      throw err;
    }
    const source = new BrokerOrderSource(inner, deviceId, this.local, (o) => this.recordHistory(o), (s) => {
      slot.open--;
      if (this.sources.get(deviceId) === s) this.sources.delete(deviceId);
    });
    this.sources.set(deviceId, source);
    return source;
  }

  /**
   * HTTPS poll: takes every ready order of the device (basic.get), publishes `delivered` for
   * each (confirmed), then acks them. If the gateway dies in between, they stay queued.
   */
  async takeQueuedOrders(deviceId: string): Promise<OrderRecord[]> {
    checkId(deviceId);
    const queue = this.topology.ordersQueue(deviceId);
    const conn = this.backbone.connection;
    return conn.withChannel(async (ch) => {
      let ready: { messageCount: number; consumerCount: number };
      try {
        ready = await ch.checkQueue(queue);
      } catch (err) {
        if ((err as { code?: number }).code === 404) return [];
        throw err;
      }
      // A consumer means the device is connected over NGTT: its orders go there (spec §9 polls
      // are for devices without a connection). basic.get is refused on single-active-consumer
      // queues, so take the ready messages with a short-lived consumer instead.
      if (ready.messageCount === 0 || ready.consumerCount > 0) return [];
      const want = Math.min(ready.messageCount, this.opts.pollLimit ?? 1000);
      const msgs: ConsumeMessage[] = [];
      await ch.prefetch(want, false);
      let consumerTag: string | undefined;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 2_000);
        const done = () => (clearTimeout(timer), resolve());
        ch.consume(queue, (msg) => {
          if (!msg) return done();
          msgs.push(msg);
          if (msgs.length >= want) done();
        }).then((ok) => (consumerTag = ok.consumerTag), (err: unknown) => (clearTimeout(timer), reject(err)));
      });
      if (consumerTag) await ch.cancel(consumerTag);
      const taken = msgs.map((msg) => ({ msg, record: toRecord(deviceId, msg) }));
      const at = Date.now();
      const records = taken.flatMap((t) => (t.record ? [{ ...t.record, state: 'delivered' as const, settledAt: at, deliveries: earlierDeliveries(t.msg) + 1 }] : []));
      await Promise.all(records.map((r) => this.publishEvent(deviceId, r.id, encode(r.sections), 'delivered', r.deliveries)));
      for (const r of records) await this.recordHistory(r);
      for (const t of taken) {
        if (!t.record) conn.logger.error({ deviceId }, 'malformed order message dropped by an HTTPS poll');
        ch.ack(t.msg);
      }
      return records;
    });
  }

  listOrders(deviceId: string, options?: ListOptions & { state?: OrderState }): Promise<OrderRecord[]> {
    return this.local.listOrders(deviceId, options);
  }

  getOrder(orderId: string): Promise<OrderRecord | null> {
    return this.local.getOrder(orderId);
  }

  /**
   * Resolves once the broker confirmed every data batch and every log batch (publisher
   * confirms); a failure rejects, the session closes and the device keeps what it has not had
   * confirmed. Message ids are deterministic: a batch the device resends (its confirm was lost)
   * carries the same id, and a shared store keys it by its content anyway.
   */
  async ingest(deviceId: string, uploads: Uploads): Promise<void> {
    const publisher = this.backbone.publisher;
    await Promise.all([
      ...(uploads.logs ?? []).map((records) => {
        const body = encode(records);
        return publisher.publishLogs(deviceId, records, { messageId: uploadId(deviceId, body) });
      }),
      ...(uploads.data ?? []).map((batch) => publisher.publishPathpoints(deviceId, batch.series, { messageId: uploadId(deviceId, batch.encoded ?? encode(batch.series)) })),
    ]);
  }

  /** False while the broker (or, with a shared store, the database) is unreachable. */
  available(): boolean {
    return this.health.available();
  }

  onAvailabilityChange(listener: (available: boolean, reason?: string) => void): () => void {
    return this.health.onChange(listener);
  }

  readData(deviceId: string, options?: ListOptions & { path?: string }): Promise<StoredSeries[]> {
    return this.local.readData(deviceId, options);
  }

  readLogs(deviceId: string, options?: ListOptions): Promise<StoredLogRecord[]> {
    return this.local.readLogs(deviceId, options);
  }

  declarePathpoints(deviceId: string, declarations: PathpointDeclaration[], options?: { authoritative?: boolean }): Promise<PathpointDeclaration[]> {
    return this.local.declarePathpoints(deviceId, declarations, options);
  }

  /** Recorded here at once, and published so that every gateway's history shows it. */
  async recordMessageReceipt(deviceId: string, uuid: string): Promise<number> {
    checkId(deviceId);
    const at = await this.local.recordMessageReceipt(deviceId, uuid);
    try {
      await this.backbone.publisher.publish(this.topology.settledExchange, `received.${deviceId}`, encode({ uuid, at }), {
        headers: { [HEADER_DEVICE]: deviceId, [HEADER_OUTCOME]: 'received', [HEADER_MESSAGE]: uuid },
      });
    } catch (err) {
      this.backbone.connection.logger.warn({ err, deviceId, uuid }, 'message receipt publish failed');
    }
    return at;
  }

  listBaobs(deviceId: string): Promise<BaobInfo[]> {
    checkId(deviceId);
    return this.baobs.listBaobs(deviceId);
  }

  getBaob(deviceId: string, key: string): Promise<Baob | null> {
    checkId(deviceId);
    return this.baobs.getBaob(deviceId, key);
  }

  offerBaob(deviceId: string, key: string, data: Uint8Array, version: number): Promise<BaobOffer> {
    checkId(deviceId);
    return this.baobs.offerBaob(deviceId, key, data, version);
  }

  publishBaob(deviceId: string, key: string, data: Uint8Array): Promise<BaobInfo> {
    checkId(deviceId);
    return this.baobs.publishBaob(deviceId, key, data);
  }

  deleteBaob(deviceId: string, key: string): Promise<boolean> {
    checkId(deviceId);
    return this.baobs.deleteBaob(deviceId, key);
  }

  readPathpointDeclarations(deviceId: string): Promise<PathpointDeclaration[]> {
    return this.local.readPathpointDeclarations(deviceId);
  }

  getDeviceConfig(deviceId: string): Promise<DeviceConfig> {
    return this.local.getDeviceConfig(deviceId);
  }

  updateDeviceConfig(deviceId: string, patch: DeviceConfigPatch): Promise<DeviceConfig> {
    return this.local.updateDeviceConfig(deviceId, patch);
  }

  /** Closes the order sources (unsettled orders go back), the sink, the broker connection, then `local`. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const s of [...this.sources.values()]) await s.close().catch(() => {});
      await this.sink?.close().catch(() => {});
      await this.baobServer?.close().catch(() => {});
      await this.baobClient?.close().catch(() => {});
      await this.history?.close().catch(() => {});
      for (const p of this.pool.slice(1)) await p.conn.close().catch(() => {});
      await this.backbone.close().catch(() => {});
      await this.local.close();
    })());
  }

  /**
   * This gateway's own order event, into `local` at once. On a shared store a failure (database
   * unreachable) is only logged: the broker already holds the order or its settlement, and the
   * same event reaches the database through the sinks (`<prefix>.orders.settled`).
   */
  private async recordHistory(order: OrderRecord): Promise<void> {
    try {
      await this.local.recordOrder(order);
    } catch (err) {
      if (!this.local.shared) throw err;
      this.backbone.connection.logger.warn({ err, orderId: order.id, state: order.state }, 'order history not written now; the sinks will write it');
    }
  }

  private async sinkUpload(messageId: string, store: () => Promise<void>): Promise<void> {
    if (this.local.shared) return store(); // exactly once by the store's unique batch keys
    // At least once: a batch redelivered after its ack was lost is stored once per sink lifetime.
    if (messageId && this.seenUploads.has(messageId)) return;
    await store();
    if (messageId) this.seenUploads.add(messageId);
  }

  private async publishEvent(deviceId: string, id: string, body: Uint8Array, outcome: string, deliveries?: number): Promise<void> {
    try {
      await this.backbone.publisher.publish(this.topology.settledExchange, `${outcome}.${deviceId}`, body, {
        messageId: id,
        headers: { [HEADER_DEVICE]: deviceId, [HEADER_OUTCOME]: outcome, ...(deliveries === undefined ? {} : { [HEADER_DELIVERIES]: deliveries }) },
      });
    } catch (err) {
      this.backbone.connection.logger.warn({ err, deviceId, id, outcome }, 'order history publish failed');
    }
  }

  private get controlExchange(): string {
    return `${this.topology.prefix}.control`;
  }

  private async publishControl(message: { type: 'connected'; deviceId: string; gateway: string }): Promise<void> {
    try {
      await this.backbone.publisher.publish(this.controlExchange, '', encode(message), { mandatory: false, persistent: false });
    } catch (err) {
      // Only a speed-up: without it the stale session ends at its idle timeout.
      this.backbone.connection.logger.warn({ err, deviceId: message.deviceId }, 'control publish failed');
    }
  }

  private onControl(msg: ConsumeMessage): void {
    let m: { type?: unknown; deviceId?: unknown; gateway?: unknown };
    try {
      m = decode(msg.content) as typeof m;
    } catch {
      return;
    }
    if (m?.type !== 'connected' || typeof m.deviceId !== 'string' || m.gateway === this.gatewayId) return;
    const source = this.sources.get(m.deviceId);
    if (source) {
      this.backbone.connection.logger.info({ deviceId: m.deviceId, gateway: m.gateway }, 'device connected at another gateway: releasing it here');
      source.revoke();
    }
  }

  /** Feeds `local`'s order history from `<prefix>.orders.settled` (see the file comment). */
  private async startHistory(): Promise<void> {
    const t = this.topology;
    const durable = !!this.opts.sink;
    // A gateway on a shared store writes its own events there directly; the sinks (competing on
    // the durable queue) write everyone's, so it needs no copy of the events.
    const consumeHistory = durable || !this.local.shared;
    this.history = new ManagedChannel(this.backbone.connection, {
      confirm: false,
      name: 'order-history',
      setup: async (ch: Channel) => {
        let queue = t.settledQueue; // declared by the publisher's shared topology
        if (!durable && consumeHistory) {
          queue = (await ch.assertQueue(`${t.prefix}.orders.history.${randomUUID().slice(0, 8)}`, { exclusive: true, autoDelete: true, durable: false })).queue;
          await ch.bindQueue(queue, t.settledExchange, '#');
        }
        await ch.prefetch(256, false);
        // Take-over notices (any gateway → every gateway): own exclusive queue on a fanout.
        await ch.assertExchange(this.controlExchange, 'fanout', { durable: true });
        const control = (await ch.assertQueue(`${t.prefix}.control.${this.gatewayId.slice(0, 8)}`, { exclusive: true, autoDelete: true, durable: false })).queue;
        await ch.bindQueue(control, this.controlExchange, '');
        await ch.consume(control, (msg) => msg && this.onControl(msg), { noAck: true });
        if (!consumeHistory) return;
        await ch.consume(queue, (msg) => {
          if (!msg) return void ch.close().catch(() => {});
          this.applyEvent(msg).then(
            () => this.history?.isOpen(ch) && ch.ack(msg),
            (err: unknown) => {
              this.backbone.connection.logger.warn({ err }, 'order history event not applied; requeued');
              if (this.history?.isOpen(ch)) ch.nack(msg, false, true);
            },
          );
        });
      },
    });
    await this.history.ready(10_000);
  }

  private async applyEvent(msg: ConsumeMessage): Promise<void> {
    const h = msg.properties.headers ?? {};
    const deviceId = String(h[HEADER_DEVICE] ?? '');
    const outcome = String(h[HEADER_OUTCOME] ?? '');
    if (outcome === 'received') {
      let receipt: { uuid?: unknown; at?: unknown };
      try {
        receipt = decode(msg.content) as typeof receipt;
      } catch {
        return; // malformed: dropped (requeueing could never fix it)
      }
      if (deviceId && typeof receipt?.uuid === 'string' && typeof receipt.at === 'number') await this.local.recordMessageReceipt(deviceId, receipt.uuid, receipt.at);
      return;
    }
    const record = toRecord(deviceId, msg);
    if (!deviceId || !record) return;
    const at = typeof msg.properties.timestamp === 'number' ? msg.properties.timestamp * 1000 : Date.now();
    const state: OrderState | null = outcome === 'queued' ? 'queued' : RANK_TERMINAL.has(outcome) ? (outcome as OrderState) : outcome === 'invalid' ? 'rejected' : null;
    if (!state) return;
    const reason = h[HEADER_REASON] === undefined ? null : String(h[HEADER_REASON]);
    // Events from before the header was added count one delivery, as they did.
    const deliveries = Number(h[HEADER_DELIVERIES]);
    await this.local.recordOrder({
      ...record,
      state,
      enqueuedAt: at,
      settledAt: state === 'queued' ? null : at,
      reason,
      deliveries: state === 'queued' ? 0 : Number.isInteger(deliveries) && deliveries > 1 ? deliveries : 1,
    });
  }
}

export function openRabbitStore(opts: RabbitStoreOptions): Promise<RabbitStore> {
  return RabbitStore.open(opts);
}

/** Adapts the broker's push-style order source to the server's pull-style OrderSource. */
class BrokerOrderSource implements OrderSource {
  private readonly ready: OrderDelivery[] = [];
  /** Order id → its deliveries so far (the broker's count, this one included). */
  private readonly handedOut = new Map<string, number>();
  private listener: (() => void) | null = null;
  private closed = false;
  private revoked = false;
  private revokedListener: ((reason: Error) => void) | null = null;

  constructor(
    private readonly inner: BrokerSource,
    private readonly deviceId: string,
    private readonly local: HistoryStore,
    private readonly record: (order: OrderRecord) => Promise<void>,
    private readonly detach: (s: BrokerOrderSource) => void,
  ) {
    inner.onOrder((o) => {
      this.ready.push(o);
      if (!this.closed) this.listener?.();
    });
  }

  /**
   * The device connected at another gateway: the session is told to close its connection (which
   * closes this source and hands the unsettled orders over). Closed after 1 s regardless.
   */
  revoke(): void {
    if (this.closed || this.revoked) return;
    this.revoked = true;
    this.revokedListener?.(new Error(`device ${this.deviceId} connected at another gateway`));
    setTimeout(() => void this.close().catch(() => {}), 1_000).unref();
  }

  onRevoked(listener: (reason: Error) => void): void {
    this.revokedListener = listener;
  }

  async next(): Promise<OrderRecord | null> {
    if (this.closed || this.revoked) return null;
    const o = this.ready.shift();
    if (!o) return null;
    this.handedOut.set(o.id, o.deliveries);
    return { id: o.id, deviceId: this.deviceId, sections: o.sections, state: 'in-flight', enqueuedAt: Date.now(), settledAt: null, reason: null, deliveries: o.deliveries };
  }

  async settle(orderId: string, outcome: Settlement, reason?: string): Promise<boolean> {
    const deliveries = this.handedOut.get(orderId);
    if (this.closed || deliveries === undefined) return false;
    try {
      await this.inner.settle(orderId, outcome === 'confirmed' ? { status: 'confirmed' } : { status: 'rejected', reason });
    } catch (err) {
      if (err instanceof UnknownOrderError) return false;
      throw err;
    }
    this.handedOut.delete(orderId);
    const at = Date.now();
    // A shared store merges the record with what it has (sections, enqueue time) by itself.
    const known = this.local.shared ? null : await this.local.getOrder(orderId);
    await this.record({
      id: orderId,
      deviceId: this.deviceId,
      sections: known?.sections ?? [],
      state: outcome,
      enqueuedAt: known?.enqueuedAt ?? at,
      settledAt: at,
      reason: reason ?? null,
      // Counted by the broker across gateways: a delivery cut short elsewhere counts too.
      deliveries: Math.max(deliveries, known?.deliveries ?? 0),
    });
    return true;
  }

  onAvailable(listener: () => void): void {
    this.listener = listener;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener = null;
    this.revokedListener = null;
    this.ready.length = 0;
    this.handedOut.clear();
    this.detach(this);
    await this.inner.close();
  }
}

function checkId(deviceId: string): void {
  try {
    checkDeviceId(deviceId);
  } catch (err) {
    throw new PayloadError((err as Error).message);
  }
}

/** An order message as a record (state queued), or null when it is malformed. */
function toRecord(deviceId: string, msg: { content: Buffer; properties: { messageId?: unknown; timestamp?: unknown } }): OrderRecord | null {
  const id = msg.properties.messageId;
  if (typeof id !== 'string' || !id) return null;
  try {
    const sections = parseSections(decode(msg.content)).sections;
    const at = typeof msg.properties.timestamp === 'number' ? msg.properties.timestamp * 1000 : Date.now();
    return { id, deviceId, sections, state: 'queued', enqueuedAt: at, settledAt: null, reason: null, deliveries: 0 };
  } catch {
    return null;
  }
}

function uploadId(deviceId: string, payload: Uint8Array): string {
  return createHash('sha256').update(deviceId).update('\0').update(payload).digest('hex').slice(0, 32);
}

class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly max: number) {}
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as string);
  }
}
