/**
 * Orders on RabbitMQ: one durable quorum queue per device (`<prefix>.orders.<deviceId>`, single
 * active consumer). The admin side enqueues from any gateway (`enqueueOrder`); the gateway that
 * holds the device's NGTT connection pulls from an `OrderQueueSource`:
 *
 *   const src = await orders.openOrderSource(deviceId, { window: 4 });
 *   src.onOrder((o) => sendOrderFrame(o.id, o.sections));   // at most `window` unsettled
 *   ... ORDER_CONFIRM → await src.settle(o.id)               // acked: gone for good
 *   ... ORDER_REJECT  → await src.settle(o.id, { status: 'rejected', reason })
 *   ... device gone   → await src.close()                    // unsettled go back to the queue
 *
 * Each source has its own channel, with prefetch = window, so a channel error on one device
 * never touches another, and closing the channel is what hands unsettled orders back.
 *
 * Across a broker reconnect the device keeps its orders: the broker returns them to the queue
 * (at the front, in their order, see docs/rabbitmq.md) and redelivers them on the new channel;
 * the source recognises their ids and does not hand them out twice, and an order the device
 * settled while the broker was away is acked as soon as it comes back.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { decode, encode } from '../../minijson/index.js';
import { parseSections, parseSectionsStrict, type Section } from '../../protocol/index.js';
import { ManagedChannel } from './channel.js';
import type { BrokerConnection } from './connection.js';
import { PublishError, type ConfirmingPublisher } from './publisher.js';
import { declareOrderQueue, HEADER_DELIVERIES, HEADER_DEVICE, HEADER_OUTCOME, HEADER_REASON, type Topology } from './topology.js';

export const DEFAULT_WINDOW = 4;

export interface OrderDelivery {
  /** Stable order id (AMQP message id, a UUID): the same on every redelivery. */
  id: string;
  sections: Section[];
  /** Delivery tag on the source's current channel (changes after a reconnect). */
  deliveryTag: number;
  /** The broker delivered this message before (to this or another consumer). */
  redelivered: boolean;
  /** Quorum queue `x-delivery-count`: earlier deliveries that were returned. */
  deliveryCount: number;
  /** Deliveries of this order so far, this one included, for the history (earlierDeliveries + 1). */
  deliveries: number;
}

/**
 * How many times the broker delivered this message before and got it back: the quorum queue's
 * `x-delivery-count` (counted by the broker, so across gateways and connections); a classic
 * queue only says "redelivered" (at least one). The order history counts deliveries with it,
 * since no single gateway sees all of them. It can count one too many: a delivery returned
 * because the broker link dropped while the device still held the order (the gateway keeps
 * that order and does not send it again).
 */
export function earlierDeliveries(msg: { fields: { redelivered: boolean }; properties: { headers?: Record<string, unknown> } }): number {
  const counted = Number(msg.properties.headers?.['x-delivery-count'] ?? 0);
  return Math.max(Number.isFinite(counted) ? counted : 0, msg.fields.redelivered ? 1 : 0);
}

export type SettleOutcome = { status: 'confirmed' } | { status: 'rejected'; reason?: string };

/** What gets published to `<prefix>.orders.settled` for audit. */
export type AuditMode = 'rejected' | 'all' | 'none';

export interface OrderSourceOptions {
  /** Most orders handed out and not settled; also the AMQP prefetch. Default 4 (spec §5). */
  window?: number;
  /** Wait this long for the consumer to be registered. Default 10 000 ms. */
  timeoutMs?: number;
}

/** A device's order queue being consumed (the server's `OrderSource` is its pull-style adapter, store.ts). */
export interface OrderQueueSource {
  readonly deviceId: string;
  readonly window: number;
  /** Orders handed to the listener and not settled yet (≤ window). */
  readonly unsettled: number;
  /**
   * Sets the listener (one per source). Orders that arrived before it was set are handed over
   * at once, up to the window.
   */
  onOrder(listener: (order: OrderDelivery) => void): void;
  /**
   * ORDER_CONFIRM / ORDER_REJECT: frees a window slot and acks the message, so it is never
   * delivered again. With audit on, the order is first published to the settled exchange.
   * Accepts the order id or its current delivery tag. Rejects (UnknownOrderError) for an id
   * that was never handed out by this source.
   */
  settle(idOrTag: string | number, outcome?: SettleOutcome): Promise<void>;
  /** Stops consuming; unsettled orders go back to the queue for the device's next connection. */
  close(): Promise<void>;
}

export class UnknownOrderError extends Error {
  override name = 'UnknownOrderError';
}

export interface OrderQueuesOptions {
  topology: Topology;
  /** Used for `enqueueOrder` and the audit trail. */
  publisher: ConfirmingPublisher;
  /** Which settled orders to publish to `<prefix>.orders.settled`. Default 'rejected'. */
  audit?: AuditMode;
  /** How many recently settled ids each source remembers to ack their redeliveries. Default 1024. */
  rememberSettled?: number;
}

export class OrderQueues {
  private declared = new Set<string>();
  private declaredGen = -1;

  constructor(
    private readonly conn: BrokerConnection,
    private readonly opts: OrderQueuesOptions,
  ) {}

  get topology(): Topology {
    return this.opts.topology;
  }

  /**
   * Validates the sections (every order must be well formed), declares the device's queue and
   * publishes the order persistently with confirms. Resolves with the order id once the broker
   * has it (replicated, on disk).
   */
  async enqueueOrder(deviceId: string, sections: Section[], options: { id?: string } = {}): Promise<string> {
    parseSectionsStrict(sections);
    const id = options.id ?? randomUUID();
    const body = encode(sections);
    const queue = await this.ensureQueue(deviceId);
    const publish = () =>
      this.opts.publisher.publish('', queue, body, { messageId: id, headers: { [HEADER_DEVICE]: deviceId } });
    try {
      await publish();
    } catch (err) {
      if (!(err instanceof PublishError && err.reason === 'unroutable')) throw err;
      // The queue was deleted behind our back: declare again and retry once.
      this.declared.delete(queue);
      await this.ensureQueue(deviceId);
      await publish();
    }
    return id;
  }

  /**
   * Orders waiting in the device's queue (ready, i.e. not in flight to a device); 0 when the
   * device has no queue yet. A passive declare, so it never creates the queue.
   */
  async queuedOrderCount(deviceId: string): Promise<number> {
    const queue = this.opts.topology.ordersQueue(deviceId);
    return this.conn.withChannel(async (ch) => {
      try {
        return (await ch.checkQueue(queue)).messageCount;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return 0;
        throw err;
      }
    });
  }

  /** Deletes a device's order queue with everything in it (decommissioning, tests). */
  async deleteOrderQueue(deviceId: string): Promise<number> {
    const queue = this.opts.topology.ordersQueue(deviceId);
    this.declared.delete(queue);
    return this.conn.withChannel(async (ch) => (await ch.deleteQueue(queue)).messageCount);
  }

  /** Starts consuming the device's orders; resolves once the consumer is registered. */
  async openOrderSource(deviceId: string, options: OrderSourceOptions = {}): Promise<OrderQueueSource> {
    const source = new RabbitOrderSource(this.conn, this.opts, deviceId, options.window ?? DEFAULT_WINDOW);
    try {
      await source.ready(options.timeoutMs ?? 10_000);
    } catch (err) {
      await source.close();
      throw err;
    }
    return source;
  }

  private async ensureQueue(deviceId: string): Promise<string> {
    const queue = this.opts.topology.ordersQueue(deviceId);
    if (this.declaredGen !== this.conn.generation) {
      this.declared = new Set();
      this.declaredGen = this.conn.generation;
    }
    if (!this.declared.has(queue)) {
      await this.conn.withChannel((ch) => declareOrderQueue(ch, this.opts.topology, deviceId));
      this.declared.add(queue);
    }
    return queue;
  }
}

interface Entry {
  id: string;
  body: Buffer;
  sections: Section[];
  /** The delivery on the current channel, or null while the broker has it back. */
  msg: ConsumeMessage | null;
  chan: Channel | null;
  emitted: boolean;
  /** Deliveries of the order so far, the one handed out included (set when handed out). */
  deliveries: number;
}

class RabbitOrderSource implements OrderQueueSource {
  private readonly managed: ManagedChannel;
  private readonly entries = new Map<string, Entry>();
  private readonly held: Entry[] = [];
  private readonly settledIds = new Set<string>();
  private listener: ((o: OrderDelivery) => void) | null = null;
  private emitted = 0;
  private closed = false;

  constructor(
    private readonly conn: BrokerConnection,
    private readonly opts: OrderQueuesOptions,
    readonly deviceId: string,
    readonly window: number,
  ) {
    if (!Number.isInteger(window) || window < 1 || window > 65_535) throw new RangeError(`window must be 1..65535, got ${window}`);
    const queue = opts.topology.ordersQueue(deviceId);
    this.managed = new ManagedChannel(conn, {
      confirm: false,
      name: `orders:${deviceId}`,
      setup: async (ch) => {
        await declareOrderQueue(ch, opts.topology, deviceId);
        await ch.prefetch(window, false);
        await ch.consume(queue, (msg) => this.onDelivery(ch, msg), {
          noAck: false,
          consumerTag: `ngtt-${deviceId}-${randomUUID().slice(0, 8)}`,
        });
      },
    });
    this.managed.on('lost', () => this.onChannelLost());
  }

  get unsettled(): number {
    return this.emitted;
  }

  ready(timeoutMs: number): Promise<unknown> {
    return this.managed.ready(timeoutMs);
  }

  onOrder(listener: (order: OrderDelivery) => void): void {
    this.listener = listener;
    this.pump();
  }

  async settle(idOrTag: string | number, outcome: SettleOutcome = { status: 'confirmed' }): Promise<void> {
    const entry = this.find(idOrTag);
    if (!entry) {
      if (typeof idOrTag === 'string' && this.settledIds.has(idOrTag)) return; // settled twice: no-op
      throw new UnknownOrderError(`device ${this.deviceId}: no unsettled order ${JSON.stringify(idOrTag)}`);
    }
    if (!entry.emitted) throw new UnknownOrderError(`device ${this.deviceId}: order ${entry.id} was not handed out yet`);
    this.entries.delete(entry.id);
    this.emitted -= 1;
    this.rememberSettled(entry.id);
    const audit = this.opts.audit ?? 'rejected';
    if (audit === 'all' || (audit === 'rejected' && outcome.status === 'rejected')) {
      await this.publishAudit(entry.id, entry.body, outcome.status, outcome.status === 'rejected' ? outcome.reason : undefined, entry.deliveries);
    }
    // The delivery may have moved to a new channel while the audit was being confirmed.
    this.ackIfHeld(entry);
    this.pump();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener = null;
    await this.managed.close();
    this.entries.clear();
    this.held.length = 0;
    this.emitted = 0;
  }

  private find(idOrTag: string | number): Entry | undefined {
    if (typeof idOrTag === 'string') return this.entries.get(idOrTag);
    for (const e of this.entries.values()) {
      if (e.chan && this.managed.isOpen(e.chan) && e.msg?.fields.deliveryTag === idOrTag) return e;
    }
    return undefined;
  }

  private ackIfHeld(entry: Entry): void {
    if (entry.msg && entry.chan && this.managed.isOpen(entry.chan)) {
      entry.chan.ack(entry.msg);
      entry.msg = null;
      entry.chan = null;
    }
    // Otherwise the broker has it back: it is acked when redelivered (settledIds).
  }

  private rememberSettled(id: string): void {
    this.settledIds.add(id);
    const max = this.opts.rememberSettled ?? 1024;
    if (this.settledIds.size > max) this.settledIds.delete(this.settledIds.values().next().value as string);
  }

  private onDelivery(ch: Channel, msg: ConsumeMessage | null): void {
    if (this.closed) return;
    if (msg === null) {
      // basic.cancel from the broker (queue deleted, or its leader moved away): start over.
      this.conn.logger.warn({ deviceId: this.deviceId }, 'order consumer cancelled by the broker; re-subscribing');
      void ch.close().catch(() => {});
      return;
    }
    const id = msg.properties.messageId as string | undefined;
    let sections: Section[];
    try {
      if (typeof id !== 'string' || id.length === 0) throw new Error('order message without a message id');
      sections = parseSections(decode(msg.content)).sections;
    } catch (err) {
      // Cannot be sent to a device: settle it as invalid (audited), do not block the queue.
      this.conn.logger.error({ err, deviceId: this.deviceId }, 'malformed order message dropped');
      ch.ack(msg);
      void this.publishAudit(id ?? `invalid-${randomUUID()}`, msg.content, 'invalid', (err as Error).message).catch(() => {});
      return;
    }
    if (this.settledIds.has(id)) {
      ch.ack(msg); // settled already; its ack was lost with the old channel
      return;
    }
    const known = this.entries.get(id);
    if (known) {
      if (known.msg && known.chan === ch) {
        ch.ack(msg); // a second message with the same order id: the first one stands
        return;
      }
      // Redelivery after a reconnect of an order the device still holds: just track the new tag.
      known.msg = msg;
      known.chan = ch;
      return;
    }
    const entry: Entry = { id, body: msg.content, sections, msg, chan: ch, emitted: false, deliveries: 0 };
    this.entries.set(id, entry);
    this.held.push(entry);
    this.pump();
  }

  private pump(): void {
    while (this.listener && !this.closed && this.held.length > 0 && this.emitted < this.window) {
      const e = this.held.shift()!;
      e.emitted = true;
      this.emitted += 1;
      const msg = e.msg;
      e.deliveries = (msg ? earlierDeliveries(msg) : 0) + 1;
      this.listener({
        id: e.id,
        sections: e.sections,
        deliveryTag: msg?.fields.deliveryTag ?? -1,
        redelivered: msg?.fields.redelivered ?? false,
        deliveryCount: Number(msg?.properties.headers?.['x-delivery-count'] ?? 0),
        deliveries: e.deliveries,
      });
    }
  }

  private onChannelLost(): void {
    // The broker takes every unacked delivery back. Orders not handed out yet are forgotten
    // (they come again); handed-out ones stay: the device still has them.
    for (const e of this.held) this.entries.delete(e.id);
    this.held.length = 0;
    for (const e of this.entries.values()) {
      e.msg = null;
      e.chan = null;
    }
  }

  private async publishAudit(id: string, body: Buffer, outcome: string, reason?: string, deliveries?: number): Promise<void> {
    const headers: Record<string, unknown> = { [HEADER_DEVICE]: this.deviceId, [HEADER_OUTCOME]: outcome };
    if (reason !== undefined) headers[HEADER_REASON] = reason;
    if (deliveries !== undefined) headers[HEADER_DELIVERIES] = deliveries;
    try {
      await this.opts.publisher.publish(this.opts.topology.settledExchange, `${outcome}.${this.deviceId}`, body, {
        messageId: id,
        headers,
      });
    } catch (err) {
      // Audit is best effort: losing the record must not keep the order from being settled.
      this.conn.logger.warn({ err, deviceId: this.deviceId, id }, 'order audit publish failed');
    }
  }
}
