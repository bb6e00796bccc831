/**
 * Publishing with publisher confirms. Every `publish` returns a Promise that resolves when the
 * broker has taken responsibility for the message (basic.ack: for a quorum queue that means a
 * majority of replicas wrote it to disk) and rejects on basic.nack, when the message could not
 * be routed to any queue (mandatory + basic.return), or when the channel or connection closes
 * before the confirm arrived. Publishes are pipelined: nothing waits for earlier confirms.
 *
 * The gateway answers DATA_STREAM with DATA_STREAM_CONFIRM only after `publishPathpoints`
 * resolved; on rejection it answers nothing (the device resends on its next connection) or
 * DATA_STREAM_REJECT only for malformed payloads, which never reach this module.
 */
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { encode } from '../../minijson/index.js';
import type { LogRecord, PathpointSeries } from '../../protocol/index.js';
import { ManagedChannel } from './channel.js';
import type { BrokerConnection } from './connection.js';
import { declareSharedTopology, HEADER_DEVICE, MINIJSON_CONTENT_TYPE, type Topology } from './topology.js';

export type PublishFailure = 'nacked' | 'unroutable' | 'channel-closed' | 'unavailable';

export class PublishError extends Error {
  override name = 'PublishError';
  constructor(
    message: string,
    readonly reason: PublishFailure,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

export interface PublishOptions {
  /** Default: a fresh UUID. Also used to match basic.return to its publish. */
  messageId?: string;
  headers?: Record<string, unknown>;
  /** Default application/minijson. */
  contentType?: string;
  /** Default true: an unroutable message rejects instead of silently vanishing. */
  mandatory?: boolean;
  /** Default true (delivery mode 2). */
  persistent?: boolean;
}

export interface ConfirmingPublisherOptions {
  topology: Topology;
  /** How long a publish waits for a channel while the broker is unreachable. Default 5 000 ms. */
  channelTimeoutMs?: number;
  /** Declare the shared exchanges and queues on every (re)open. Default true. */
  declareTopology?: boolean;
}

const toBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export class ConfirmingPublisher {
  private readonly managed: ManagedChannel<ConfirmChannel>;
  private readonly returned = new Set<string>();
  private pending = 0;
  /** Set while the channel's write buffer is over its high-water mark: publishes wait for 'drain'. */
  private drained: Promise<void> | null = null;

  private constructor(
    conn: BrokerConnection,
    private readonly opts: ConfirmingPublisherOptions,
  ) {
    this.managed = new ManagedChannel<ConfirmChannel>(conn, {
      confirm: true,
      name: 'publisher',
      setup: async (ch) => {
        ch.on('return', (msg: Message) => {
          const id = msg.properties.messageId as string | undefined;
          if (id !== undefined) this.returned.add(id);
        });
        if (opts.declareTopology !== false) await declareSharedTopology(ch, opts.topology);
      },
    });
  }

  /** Opens the publisher's confirm channel (declaring the shared topology) and waits for it. */
  static async open(conn: BrokerConnection, opts: ConfirmingPublisherOptions): Promise<ConfirmingPublisher> {
    const p = new ConfirmingPublisher(conn, opts);
    await p.managed.ready(opts.channelTimeoutMs ?? 5_000);
    return p;
  }

  get topology(): Topology {
    return this.opts.topology;
  }

  /** Publishes not yet confirmed or failed. */
  get inFlight(): number {
    return this.pending;
  }

  /** Resolves on broker ack; rejects with PublishError. */
  publish(exchange: string, routingKey: string, body: Uint8Array, options: PublishOptions = {}): Promise<void> {
    // Channel backpressure: while amqplib's buffer is full, new publishes wait (and so do the
    // devices' sessions behind them) instead of growing the gateway's memory.
    if (this.drained) return this.drained.then(() => this.publish(exchange, routingKey, body, options));
    const ch = this.managed.current;
    if (ch) return this.publishOn(ch, exchange, routingKey, body, options);
    return this.managed.ready(this.opts.channelTimeoutMs ?? 5_000).then(
      (c) => this.publishOn(c, exchange, routingKey, body, options),
      (err: unknown) => {
        throw new PublishError(`no channel to publish on: ${(err as Error).message}`, 'unavailable', err);
      },
    );
  }

  /** One DATA_STREAM batch of a device → `<prefix>.pathpoints`, routing key = device id. */
  publishPathpoints(deviceId: string, series: PathpointSeries[], options: PublishOptions = {}): Promise<string> {
    return this.publishFor(this.opts.topology.pathpointsExchange, deviceId, encode(series), options);
  }

  /** One LOGS frame of a device → `<prefix>.logs`, routing key = device id. */
  publishLogs(deviceId: string, records: LogRecord[], options: PublishOptions = {}): Promise<string> {
    return this.publishFor(this.opts.topology.logsExchange, deviceId, encode(records), options);
  }

  async close(): Promise<void> {
    await this.managed.close();
  }

  private async publishFor(exchange: string, deviceId: string, body: Uint8Array, options: PublishOptions): Promise<string> {
    const messageId = options.messageId ?? randomUUID();
    await this.publish(exchange, deviceId, body, {
      ...options,
      messageId,
      headers: { ...options.headers, [HEADER_DEVICE]: deviceId },
    });
    return messageId;
  }

  private waitForDrain(ch: ConfirmChannel): void {
    if (this.drained) return;
    this.drained = new Promise<void>((resolve) => {
      const done = () => {
        ch.off('drain', done);
        ch.off('close', done);
        this.drained = null;
        resolve();
      };
      ch.on('drain', done);
      ch.on('close', done);
    });
  }

  private publishOn(ch: ConfirmChannel, exchange: string, routingKey: string, body: Uint8Array, o: PublishOptions): Promise<void> {
    const messageId = o.messageId ?? randomUUID();
    const amqpOptions: Options.Publish = {
      messageId,
      persistent: o.persistent ?? true,
      mandatory: o.mandatory ?? true,
      contentType: o.contentType ?? MINIJSON_CONTENT_TYPE,
      timestamp: Math.floor(Date.now() / 1000),
      headers: o.headers,
    };
    return new Promise<void>((resolve, reject) => {
      this.pending += 1;
      let settled = false;
      const done = (err: unknown) => {
        if (settled) return;
        settled = true;
        this.pending -= 1;
        const wasReturned = this.returned.delete(messageId);
        if (err) {
          const text = err instanceof Error ? err.message : String(err);
          const reason: PublishFailure = text.includes('nack') ? 'nacked' : 'channel-closed';
          reject(new PublishError(`publish to ${exchange || '(default)'}/${routingKey} failed: ${text}`, reason, err));
        } else if (wasReturned) {
          reject(new PublishError(`publish to ${exchange || '(default)'}/${routingKey}: no queue bound (unroutable)`, 'unroutable'));
        } else resolve();
      };
      try {
        // false: the socket buffer is over its high-water mark; this message is buffered, the
        // next ones wait for 'drain' (or the channel's end, when they fail or go to a new one).
        if (!ch.publish(exchange, routingKey, toBuffer(body), amqpOptions, done)) this.waitForDrain(ch);
      } catch (err) {
        done(err ?? new Error('channel closed'));
      }
    });
  }
}
