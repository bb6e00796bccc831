/**
 * A channel that comes back: opened on every (re)connect of the BrokerConnection and re-opened
 * (with backoff) when the broker closes it on its own (a channel error such as a 404 or 406 only
 * closes that channel, not the connection, nor other devices' channels). `setup` runs on each
 * new channel before it is handed out: declare topology, set prefetch, start consumers.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConfirmChannel } from 'amqplib';
import { backoffDelay } from '../../../machines/common.js';
import { BrokerUnavailableError, type BrokerConnection } from './connection.js';

export interface ManagedChannelOptions<C extends Channel> {
  confirm: C extends ConfirmChannel ? true : boolean;
  /** Runs on every new channel; a rejection closes that channel and retries later. */
  setup: (ch: C) => Promise<void>;
  /** For logs. */
  name: string;
  /** Delay before re-opening a channel the broker closed: doubles from this, capped at 5 s. Default 100 ms. */
  retryDelayMs?: number;
}

/** Events: `open` (channel) once set up; `lost` (channel) when a set-up channel closed. */
export class ManagedChannel<C extends Channel = Channel> extends EventEmitter {
  private ch: C | null = null;
  /** The newest channel, from creation (before setup) until it closes. */
  private live: C | null = null;
  private opening = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly conn: BrokerConnection,
    private readonly opts: ManagedChannelOptions<C>,
  ) {
    super();
    this.unsubscribe = conn.onConnected(() => this.openSoon(0));
  }

  /** The set-up channel, or null while (re)opening. */
  get current(): C | null {
    return this.ch;
  }

  /**
   * Whether `ch` is this object's open channel, also while its setup is still running (consumers
   * started in setup get deliveries before it finishes). Acks go only to an open channel: a
   * delivery tag means nothing on any other.
   */
  isOpen(ch: Channel): boolean {
    return ch === this.live && !this.closed;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves with the set-up channel, waiting at most `timeoutMs`. */
  ready(timeoutMs = 10_000): Promise<C> {
    if (this.ch) return Promise.resolve(this.ch);
    if (this.closed) return Promise.reject(new BrokerUnavailableError(`${this.opts.name}: closed`));
    return new Promise((resolve, reject) => {
      const onOpen = (ch: C) => {
        clearTimeout(t);
        this.off('closed', onClosed);
        resolve(ch);
      };
      const onClosed = () => {
        clearTimeout(t);
        this.off('open', onOpen);
        reject(new BrokerUnavailableError(`${this.opts.name}: closed`));
      };
      const t = setTimeout(() => {
        this.off('open', onOpen);
        this.off('closed', onClosed);
        reject(new BrokerUnavailableError(`${this.opts.name}: no channel within ${timeoutMs} ms`));
      }, timeoutMs);
      this.once('open', onOpen);
      this.once('closed', onClosed);
    });
  }

  /** Closes the channel for good (the broker returns its unacked deliveries to their queues). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ch = this.ch;
    this.ch = null;
    this.emit('closed');
    if (ch) {
      this.emit('lost', ch);
      await ch.close().catch(() => {});
    }
  }

  private openSoon(delayMs: number): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.open();
    }, delayMs);
  }

  private async open(): Promise<void> {
    if (this.closed || this.opening || this.ch) return;
    const model = this.conn.current;
    if (!model) return; // the next `connected` opens it
    this.opening = true;
    let ch: C | null = null;
    let chClosed = false;
    try {
      ch = (this.opts.confirm ? await model.createConfirmChannel() : await model.createChannel()) as C;
      const opened = ch;
      this.live = opened;
      opened.on('error', (err: Error) => this.conn.logger.warn({ err, channel: this.opts.name }, 'amqp channel error'));
      opened.once('close', () => {
        chClosed = true;
        if (this.live === opened) this.live = null;
        this.onChannelClose(opened);
      });
      await this.opts.setup(opened);
      if (chClosed) throw new Error('channel closed during setup');
      if (this.closed) {
        await opened.close().catch(() => {});
        return;
      }
      this.ch = opened;
      this.failures = 0;
      this.emit('open', opened);
    } catch (err) {
      this.failures += 1;
      this.conn.logger.warn({ err, channel: this.opts.name, failures: this.failures }, 'amqp channel setup failed');
      if (ch && !chClosed) await ch.close().catch(() => {});
      if (this.conn.current === model) this.openSoon(this.backoff());
    } finally {
      this.opening = false;
    }
  }

  private backoff(): number {
    return backoffDelay(this.failures, { baseMs: this.opts.retryDelayMs ?? 100, maxMs: 5_000, jitter: 0 }, Math.random);
  }

  private onChannelClose(ch: C): void {
    if (this.ch !== ch) return;
    this.ch = null;
    this.emit('lost', ch);
    if (this.closed) return;
    // If the whole connection went down, `connected` re-opens us; otherwise retry now-ish.
    setImmediate(() => {
      if (this.conn.current) {
        this.failures += 1;
        this.openSoon(this.backoff());
      }
    });
  }
}
