/**
 * One AMQP connection per gateway process, kept alive: when the broker connection drops it is
 * re-opened with exponential backoff (with jitter), and every component that registered with
 * `onConnected` re-opens its channels, re-declares its topology and re-subscribes.
 *
 * Components never hold on to a channel across a reconnect: each listens for `connected` (a new
 * generation of the connection) and builds its state again. Channels are cheap, but bounded by
 * the negotiated `channel_max` (RabbitMQ's default is 2047 per connection), see docs/rabbitmq.md.
 */
import { EventEmitter } from 'node:events';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { backoffDelay } from '../../../machines/common.js';

/** The subset of a pino logger the RabbitMQ modules use. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface ReconnectOptions {
  /** First delay after a drop, ms. Default 200. */
  initialDelayMs?: number;
  /** Cap on the delay, ms. Default 15 000. */
  maxDelayMs?: number;
  /** Random spread, 0..1, applied as ±jitter × delay. Default 0.3. */
  jitter?: number;
}

export interface BrokerConnectionOptions {
  /** AMQP URL. Default `amqp://guest:guest@127.0.0.1:5672`. */
  url?: string;
  /** Shown by `rabbitmqctl list_connections client_properties` (connection_name). */
  connectionName?: string;
  /** AMQP heartbeat, seconds. Default 15: a dead broker link is noticed within ~30 s. */
  heartbeatSec?: number;
  reconnect?: ReconnectOptions;
  logger?: Logger;
}

export class BrokerUnavailableError extends Error {
  override name = 'BrokerUnavailableError';
}

export const DEFAULT_URL = 'amqp://guest:guest@127.0.0.1:5672';

type ConnectedListener = (model: ChannelModel, generation: number) => void;

/**
 * Events: `connected` (model, generation) after every successful (re)connect; `disconnected`
 * (error) when an established connection is lost; `reconnect-scheduled` ({attempt, delayMs}).
 */
export class BrokerConnection extends EventEmitter {
  private model: ChannelModel | null = null;
  private gen = 0;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private readonly waiters = new Set<{ resolve: (m: ChannelModel) => void; reject: (e: Error) => void }>();
  /**
   * onConnected listeners: one per ManagedChannel, so one per device with an order source open.
   * A set dispatched by connectOnce, not EventEmitter listeners, which warn past 10
   * (MaxListenersExceededWarning) for what is not a leak.
   */
  private readonly connectedListeners = new Set<ConnectedListener>();
  readonly logger: Logger;

  private constructor(private readonly opts: BrokerConnectionOptions) {
    super();
    this.logger = opts.logger ?? silentLogger;
  }

  /**
   * Connects once; rejects if the broker cannot be reached (fail fast at start-up: let the
   * process supervisor restart the gateway). Once established, the connection is kept alive
   * with reconnects until `close()`.
   */
  static async open(opts: BrokerConnectionOptions = {}): Promise<BrokerConnection> {
    const bc = new BrokerConnection(opts);
    await bc.connectOnce();
    return bc;
  }

  /** Increases with every (re)connect; 0 before the first. */
  get generation(): number {
    return this.gen;
  }

  get connected(): boolean {
    return this.model !== null;
  }

  /** The live amqplib connection, or null while reconnecting. */
  get current(): ChannelModel | null {
    return this.model;
  }

  /**
   * Calls `listener` now (if connected) and after every reconnect. Returns an unsubscribe
   * function. This is how components re-establish channels and consumers.
   */
  onConnected(listener: ConnectedListener): () => void {
    // A wrapper per subscription: the same function subscribed twice is called twice, as with `on`.
    const subscription: ConnectedListener = (model, generation) => listener(model, generation);
    this.connectedListeners.add(subscription);
    if (this.model) listener(this.model, this.gen);
    return () => void this.connectedListeners.delete(subscription);
  }

  /** Resolves with the live connection, waiting at most `timeoutMs` for a reconnect. */
  whenConnected(timeoutMs = 10_000): Promise<ChannelModel> {
    if (this.model) return Promise.resolve(this.model);
    if (this.closed) return Promise.reject(new BrokerUnavailableError('broker connection closed'));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (m: ChannelModel) => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          this.waiters.delete(w);
          reject(e);
        },
      };
      const t = setTimeout(() => w.reject(new BrokerUnavailableError(`no broker connection within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.add(w);
    });
  }

  async createChannel(timeoutMs?: number): Promise<Channel> {
    const model = await this.whenConnected(timeoutMs);
    return model.createChannel();
  }

  async createConfirmChannel(timeoutMs?: number): Promise<ConfirmChannel> {
    const model = await this.whenConnected(timeoutMs);
    return model.createConfirmChannel();
  }

  /**
   * Runs `fn` on a short-lived channel and closes it. Use for operations that may close the
   * channel on failure (passive declares, deletes), so that no long-lived channel is hurt.
   */
  async withChannel<T>(fn: (ch: Channel) => Promise<T>, timeoutMs?: number): Promise<T> {
    const ch = await this.createChannel(timeoutMs);
    let chClosed = false;
    ch.on('error', () => {});
    ch.on('close', () => {
      chClosed = true;
    });
    try {
      return await fn(ch);
    } finally {
      if (!chClosed) await ch.close().catch(() => {});
    }
  }

  /** Closes for good: no reconnects after this. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of [...this.waiters]) w.reject(new BrokerUnavailableError('broker connection closed'));
    const m = this.model;
    this.model = null;
    if (m) await m.close().catch(() => {});
  }

  private async connectOnce(): Promise<void> {
    const url = new URL(this.opts.url ?? DEFAULT_URL);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(this.opts.heartbeatSec ?? 15));
    const model = await amqp.connect(url.toString(), {
      clientProperties: { connection_name: this.opts.connectionName ?? `ngtt-gateway-${process.pid}` },
      timeout: 10_000,
    });
    if (this.closed) {
      await model.close().catch(() => {});
      return;
    }
    model.on('error', (err: Error) => this.logger.warn({ err }, 'amqp connection error'));
    model.on('blocked', (reason: string) => this.logger.warn({ reason }, 'amqp connection blocked by the broker (resource alarm)'));
    model.on('unblocked', () => this.logger.info({}, 'amqp connection unblocked'));
    model.on('close', (err?: Error) => this.onModelClose(model, err));
    this.model = model;
    this.gen += 1;
    this.attempt = 0;
    this.logger.info({ generation: this.gen }, 'amqp connected');
    for (const w of [...this.waiters]) w.resolve(model);
    for (const listener of [...this.connectedListeners]) listener(model, this.gen);
    this.emit('connected', model, this.gen);
  }

  private onModelClose(model: ChannelModel, err?: Error): void {
    if (this.model !== model) return;
    this.model = null;
    if (this.closed) return;
    this.logger.warn({ err }, 'amqp connection lost; reconnecting');
    this.emit('disconnected', err ?? new Error('connection closed'));
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    const r = this.opts.reconnect ?? {};
    const jitter = Math.min(1, Math.max(0, r.jitter ?? 0.3));
    this.attempt += 1;
    const delayMs = backoffDelay(this.attempt, { baseMs: r.initialDelayMs ?? 200, maxMs: r.maxDelayMs ?? 15_000, jitter }, Math.random);
    this.emit('reconnect-scheduled', { attempt: this.attempt, delayMs });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connectOnce().catch((err: unknown) => {
        this.logger.warn({ err, attempt: this.attempt }, 'amqp reconnect failed');
        this.scheduleReconnect();
      });
    }, delayMs);
  }
}
