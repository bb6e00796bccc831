/**
 * DATA_STREAM and LOGS handling for one connection (spec §7, §8). Frames are answered in the
 * order they arrived, but not one at a time: whatever has queued up while the previous write
 * was in progress is stored in one transaction, then its replies go out together (each in TLS
 * records of its own for a device that needs that, see frame-writer.ts).
 * That is what makes many DATA_STREAMs in flight pay off. A CONFIRM is only sent after the
 * store has resolved (durable). When too much waits, reading from the socket pauses, so a fast
 * device is slowed by TCP rather than by the server's memory.
 * LOGS has no reply, so a PING is answered in the same order: its echo goes out only after
 * every DATA_STREAM and LOGS received before it is stored. Our device sends a PING behind each
 * LOGS frame and keeps the batch until the echo (machines/logs.ts); a device that does not (the
 * original client) is covered by HeldLogs: batches received but not stored (the store failed,
 * or the session closed first) are held there and stored later.
 */
import { encodeFrame, encodeValueFrame, FrameType, NO_REPLY_TID, type LogRecord, type PathpointSeries } from '../protocol/index.js';
import type { DeviceCounters } from './device-registry.js';
import type { HeldLogs } from './held-logs.js';
import type { DataBatch, Store } from './store/index.js';

type Entry =
  | { kind: 'data'; tid: number; batch: DataBatch; bytes: number }
  | { kind: 'reject'; tid: number; reason: string; bytes: number }
  | { kind: 'logs'; records: LogRecord[]; bytes: number }
  | { kind: 'ping'; tid: number; bytes: number };

export interface UploadPipelineOptions {
  deviceId: string;
  store: Store;
  counters: DeviceCounters;
  /** Writes the replies of one flush, in order. */
  write(frames: Buffer[]): void;
  /** Reading from the socket should stop (true) or go on (false). */
  setReadPaused(paused: boolean): void;
  /** Log batches received but not stored; they are stored again later. */
  heldLogs: HeldLogs;
  /** The store failed: close the connection without confirming; the device sends the data again. */
  onFailure(error: unknown): void;
  /** Bytes of queued payloads above which reading pauses. Default 8 MiB. */
  highWaterMark?: number;
}

export class UploadPipeline {
  private queue: Entry[] = [];
  private queuedBytes = 0;
  private running = false;
  private stopped = false;
  private readonly highWaterMark: number;
  /** Resolves when the queue is empty and nothing is being written (tests, orderly close). */
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly o: UploadPipelineOptions) {
    this.highWaterMark = o.highWaterMark ?? 8 * 1024 * 1024;
  }

  data(tid: number, series: PathpointSeries[], encoded: Uint8Array): void {
    this.push({ kind: 'data', tid, batch: { series, encoded }, bytes: encoded.length });
  }

  reject(tid: number, reason: string): void {
    this.push({ kind: 'reject', tid, reason, bytes: 0 });
  }

  logs(records: LogRecord[], bytes: number): void {
    this.push({ kind: 'logs', records, bytes });
  }

  /** A PING: echoed at once when nothing is waiting to be stored, else after what came before it. */
  ping(tid: number): void {
    if (this.stopped) return; // the store failed: no echo, the device keeps its logs
    if (!this.running && this.queue.length === 0) return this.o.write([encodeFrame(tid, FrameType.PING)]);
    this.push({ kind: 'ping', tid, bytes: 0 });
  }

  stop(): void {
    this.stopped = true;
    this.hold(this.queue);
    this.queue = [];
  }

  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private push(entry: Entry): void {
    if (this.stopped) return this.hold([entry]);
    this.queue.push(entry);
    this.queuedBytes += entry.bytes;
    if (this.queuedBytes > this.highWaterMark) this.o.setReadPaused(true);
    if (!this.running) {
      this.running = true;
      // Let the rest of the current socket chunk queue up first, so it joins this batch.
      setImmediate(() => void this.run());
    }
  }

  private async run(): Promise<void> {
    let storing: Entry[] = [];
    try {
      while (this.queue.length && !this.stopped) {
        const batch = (storing = this.queue);
        this.queue = [];
        const data = batch.flatMap((e) => (e.kind === 'data' ? [e.batch] : []));
        const logs = batch.flatMap((e) => (e.kind === 'logs' ? [e.records] : []));
        // Only PINGs and REJECTs waiting (behind a write that has ended): nothing to store.
        if (data.length || logs.length) await this.o.store.ingest(this.o.deviceId, { data, logs });
        storing = [];
        if (this.stopped) break;
        this.queuedBytes -= batch.reduce((n, e) => n + e.bytes, 0);
        if (this.queuedBytes <= this.highWaterMark) this.o.setReadPaused(false);
        const replies = this.replies(batch);
        if (replies.length) this.o.write(replies);
      }
    } catch (e) {
      // Data is not confirmed and comes again from the device; logs would not.
      this.hold(storing);
      this.stopped = true;
      this.o.onFailure(e);
    } finally {
      this.running = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private hold(entries: Entry[]): void {
    const logs = entries.flatMap((e) => (e.kind === 'logs' ? [e.records] : []));
    if (logs.length) this.o.heldLogs.hold(this.o.deviceId, logs);
  }

  private replies(batch: Entry[]): Buffer[] {
    const c = this.o.counters;
    const out: Buffer[] = [];
    for (const e of batch) {
      if (e.kind === 'logs') {
        c.logRecords += e.records.length;
      } else if (e.kind === 'ping') {
        out.push(encodeFrame(e.tid, FrameType.PING));
      } else if (e.kind === 'data') {
        c.dataBatchesConfirmed++;
        if (e.tid !== NO_REPLY_TID) out.push(encodeFrame(e.tid, FrameType.DATA_STREAM_CONFIRM));
      } else {
        c.dataBatchesRejected++;
        if (e.tid !== NO_REPLY_TID) out.push(encodeValueFrame(e.tid, FrameType.DATA_STREAM_REJECT, { reason: e.reason }));
      }
    }
    return out;
  }
}
