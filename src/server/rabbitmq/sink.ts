/**
 * The other end of the data path: consumes `<prefix>.pathpoints` and `<prefix>.logs` and hands
 * each batch to a callback (e.g. the SQLite store), acking the message only after the callback
 * resolved. A callback that rejects gets the message again after `retryDelayMs` (nack +
 * requeue); a message that cannot be decoded or does not have the right shape is handed to
 * `onInvalid` and dropped (nack without requeue), since retrying cannot fix it.
 *
 * Delivery is at least once: if the sink's channel or process dies between the callback and the
 * ack, the batch comes again (meta.redelivered = true). Stores should dedupe on meta.messageId.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { decode } from '../../minijson/index.js';
import { parseLogRecords, parsePathpointData, type LogRecord, type PathpointSeries } from '../../protocol/index.js';
import { ManagedChannel } from './channel.js';
import type { BrokerConnection } from './connection.js';
import { declareSharedTopology, HEADER_DEVICE, type Topology } from './topology.js';

export interface SinkMeta {
  deviceId: string;
  /** Set by the publisher; stable across redeliveries: the dedupe key. */
  messageId: string;
  /** Unix seconds at publish. */
  timestamp?: number;
  redelivered: boolean;
}

export interface SinkHandlers {
  onPathpoints?: (deviceId: string, series: PathpointSeries[], meta: SinkMeta) => Promise<void> | void;
  onLogs?: (deviceId: string, records: LogRecord[], meta: SinkMeta) => Promise<void> | void;
  onInvalid?: (kind: 'pathpoints' | 'logs', error: Error, message: ConsumeMessage) => void;
}

export interface SinkOptions {
  topology: Topology;
  /** Unacked messages per queue (callbacks may run concurrently up to this). Default 64. */
  prefetch?: number;
  /** Wait before requeueing a message whose callback failed. Default 1 000 ms. */
  retryDelayMs?: number;
  timeoutMs?: number;
}

export class Sink {
  private readonly managed: ManagedChannel;
  private readonly running = new Set<Promise<void>>();
  private readonly consumerTags = new Map<Channel, string[]>();
  private closing = false;

  private constructor(
    private readonly conn: BrokerConnection,
    private readonly handlers: SinkHandlers,
    private readonly opts: SinkOptions,
  ) {
    const t = opts.topology;
    this.managed = new ManagedChannel(conn, {
      confirm: false,
      name: 'sink',
      setup: async (ch) => {
        await declareSharedTopology(ch, t);
        await ch.prefetch(opts.prefetch ?? 64, false);
        const tags: string[] = [];
        if (handlers.onPathpoints) {
          tags.push((await ch.consume(t.pathpointsQueue, (m) => this.onMessage(ch, 'pathpoints', m), { noAck: false })).consumerTag);
        }
        if (handlers.onLogs) {
          tags.push((await ch.consume(t.logsQueue, (m) => this.onMessage(ch, 'logs', m), { noAck: false })).consumerTag);
        }
        this.consumerTags.set(ch, tags);
      },
    });
    this.managed.on('lost', (ch: Channel) => this.consumerTags.delete(ch));
  }

  static async start(conn: BrokerConnection, handlers: SinkHandlers, opts: SinkOptions): Promise<Sink> {
    const sink = new Sink(conn, handlers, opts);
    try {
      await sink.managed.ready(opts.timeoutMs ?? 10_000);
    } catch (err) {
      await sink.managed.close();
      throw err;
    }
    return sink;
  }

  /** Callbacks running now. */
  get busy(): number {
    return this.running.size;
  }

  /** Stops consuming, lets running callbacks finish and ack, then closes the channel. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const ch = this.managed.current;
    if (ch) for (const tag of this.consumerTags.get(ch) ?? []) await ch.cancel(tag).catch(() => {});
    await Promise.allSettled([...this.running]);
    await this.managed.close();
  }

  private onMessage(ch: Channel, kind: 'pathpoints' | 'logs', msg: ConsumeMessage | null): void {
    if (msg === null) {
      void ch.close().catch(() => {}); // consumer cancelled by the broker: re-subscribe
      return;
    }
    const p = this.handle(ch, kind, msg).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private async handle(ch: Channel, kind: 'pathpoints' | 'logs', msg: ConsumeMessage): Promise<void> {
    const headers = msg.properties.headers ?? {};
    const deviceId = String(headers[HEADER_DEVICE] ?? msg.fields.routingKey);
    const meta: SinkMeta = {
      deviceId,
      messageId: String(msg.properties.messageId ?? ''),
      timestamp: msg.properties.timestamp as number | undefined,
      redelivered: msg.fields.redelivered,
    };
    let payload: PathpointSeries[] | LogRecord[];
    try {
      const value = decode(msg.content);
      payload = kind === 'pathpoints' ? parsePathpointData(value) : parseLogRecords(value);
    } catch (err) {
      this.handlers.onInvalid?.(kind, err as Error, msg);
      this.settle(ch, () => ch.nack(msg, false, false));
      return;
    }
    try {
      if (kind === 'pathpoints') await this.handlers.onPathpoints!(deviceId, payload as PathpointSeries[], meta);
      else await this.handlers.onLogs!(deviceId, payload as LogRecord[], meta);
    } catch (err) {
      this.conn.logger.warn({ err, kind, deviceId, messageId: meta.messageId }, 'sink callback failed; requeueing');
      await new Promise((r) => setTimeout(r, this.opts.retryDelayMs ?? 1_000));
      this.settle(ch, () => ch.nack(msg, false, true));
      return;
    }
    this.settle(ch, () => ch.ack(msg));
  }

  private settle(ch: Channel, op: () => void): void {
    // A tag is only valid on its own channel; if that channel is gone the broker has already
    // requeued the message and it comes again.
    if (!this.managed.isOpen(ch)) return;
    try {
      op();
    } catch (err) {
      this.conn.logger.warn({ err }, 'sink ack failed (channel closing); the message will be redelivered');
    }
  }
}
