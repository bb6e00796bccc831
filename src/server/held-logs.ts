/**
 * Log batches a gateway received but could not store (issue #16). LOGS frames have no reply
 * (spec §7). Our device keeps a batch until the echo of the PING it sends behind it
 * (upload-pipeline.ts), but a client that sends none (the original Python client) forgets a
 * batch once it is written to the socket, so a batch whose ingest failed, or that was still
 * queued when its session closed, may have no other copy. It is held here,
 * in memory and bounded, and stored again once the store is available. A retry cannot store a
 * batch twice: stores key a log batch by its content (PostgreSQL: unique digest per device;
 * RabbitMQ: message id from the same bytes; SQLite and memory: digest window), so a batch that
 * did reach the store before the failure is skipped.
 */
import type { Logger } from 'pino';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../../machines/common.js';
import type { LogRecord } from '../protocol/index.js';
import { RateLimitedLog } from './rate-limited-log.js';
import type { Store } from './store/index.js';

export interface HeldLogsOptions {
  store: Store;
  logger: Logger;
  /** Batches held at most (all devices of this process); beyond it new ones are dropped, counted and logged. Default 10 000. */
  maxBatches?: number;
  /** Batches stored per ingest call when catching up. Default 100. */
  chunkBatches?: number;
  /** Delay between retries while the store says it is available but ingest still fails. */
  backoff?: BackoffOptions;
}

interface HeldBatch {
  deviceId: string;
  records: LogRecord[];
}

export class HeldLogs {
  /** Batches dropped because the hold was full. */
  dropped = 0;
  /** Held batches stored later. */
  stored = 0;
  private batches: HeldBatch[] = [];
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private closed = false;
  private readonly maxBatches: number;
  private readonly chunkBatches: number;
  private readonly backoff: BackoffOptions;
  private readonly dropLog: RateLimitedLog;
  private readonly unsubscribe: (() => void) | undefined;

  constructor(private readonly o: HeldLogsOptions) {
    this.maxBatches = o.maxBatches ?? 10_000;
    this.chunkBatches = o.chunkBatches ?? 100;
    this.backoff = o.backoff ?? DEFAULT_BACKOFF;
    this.dropLog = new RateLimitedLog(o.logger, 'log batch dropped: too many held while the store was failing');
    this.unsubscribe = o.store.onAvailabilityChange?.((available) => {
      if (available) this.flushNow();
    });
  }

  /** Batches waiting to be stored. */
  get size(): number {
    return this.batches.length;
  }

  hold(deviceId: string, logs: LogRecord[][]): void {
    for (const records of logs) {
      if (this.batches.length >= this.maxBatches) {
        this.dropped++;
        this.dropLog.note('hold full', { deviceId, records: records.length, maxBatches: this.maxBatches, droppedTotal: this.dropped });
        continue;
      }
      this.batches.push({ deviceId, records });
    }
    if (logs.length) this.flushNow();
  }

  /** Resolves when the current attempt to store what is held has ended (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /**
   * Stops retrying. A last attempt is made when the store is available; what is still held
   * afterwards is lost with the process and logged.
   */
  async close(): Promise<void> {
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.o.store.available?.() !== false) this.flushNow();
    this.closed = true;
    await this.settled();
    if (this.batches.length) this.o.logger.error({ batches: this.batches.length }, 'held log batches not stored before shutdown');
  }

  private flushNow(): void {
    if (this.closed || this.flushing || !this.batches.length) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // The availability listener starts the next attempt.
    if (this.o.store.available?.() === false) return;
    this.flushing = this.flush().finally(() => (this.flushing = null));
  }

  private async flush(): Promise<void> {
    let stored = 0;
    while (this.batches.length) {
      const deviceId = this.batches[0].deviceId;
      let n = 1;
      while (n < this.batches.length && n < this.chunkBatches && this.batches[n].deviceId === deviceId) n++;
      const chunk = this.batches.slice(0, n);
      try {
        await this.o.store.ingest(deviceId, { logs: chunk.map((b) => b.records) });
      } catch (e) {
        this.failures++;
        if (this.closed) return;
        const delay = backoffDelay(this.failures, this.backoff, Math.random);
        this.o.logger.warn({ err: e, held: this.batches.length, retryInMs: delay }, 'storing held log batches failed; retrying');
        this.timer = setTimeout(() => {
          this.timer = null;
          this.flushNow();
        }, delay).unref();
        return;
      }
      this.failures = 0;
      this.batches.splice(0, n);
      this.stored += n;
      stored += n;
    }
    this.o.logger.info({ batches: stored }, 'held log batches stored');
  }
}
