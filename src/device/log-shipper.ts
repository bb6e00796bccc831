/**
 * Ships the device's own pino logs as LOGS records (spec §7). A bounded buffer drops the
 * oldest record when full and counts it; adding never blocks or throws, and
 * the shipper never logs about its own trouble (that would feed itself in a loop).
 *
 * It is the one buffer of the device's logs and says when a batch is due (`next`: at
 * maxBatchRecords records, or maxBatchAgeMs after the oldest); the logs machine asks it, and
 * keeps the batch it took until the server proves it stored it.
 *
 *   const shipper = new LogShipper({ service: 'boiler' });
 *   const logger = pino({}, pino.multistream([{ stream: process.stdout }, { stream: shipper.stream }]));
 *   ...  send(shipper.next({ flush: true }).records)  // LOGS frame or PUT /v1/device/device_logs
 */
import { gzipSync } from 'node:zlib';
import { LogLevel, type LogRecord } from '../protocol/index.js';

export interface LogShipperOptions {
  /** Service name when a log carries neither `service` nor a logger `name`. Default 'device'. */
  service?: string;
  /** Records kept at most. Default 1000. */
  capacity?: number;
  /** Messages of at least this many bytes are tried compressed. Default 256. */
  compressFrom?: number;
  /** Clock (unix ms) for logs without a numeric `time`. Default Date.now. */
  now?: () => number;
  /** Records per batch (LOGS frame / PUT). Default 100. */
  maxBatchRecords?: number;
  /** A batch is due this long after its oldest record came. Default 5 s. */
  maxBatchAgeMs?: number;
  /** Called after a record was added (e.g. to schedule a send). Must not log. */
  onRecord?: (buffered: number) => void;
}

export const DEFAULT_LOG_BATCH = { maxBatchRecords: 100, maxBatchAgeMs: 5_000 };

/** Pino's numeric levels mapped to the spec's: trace and debug 10, info 20, warn 30, error 40, fatal 50. */
export function ngttLevel(pinoLevel: number): number {
  if (pinoLevel < 30) return LogLevel.DEBUG;
  if (pinoLevel < 40) return LogLevel.INFO;
  if (pinoLevel < 50) return LogLevel.WARNING;
  if (pinoLevel < 60) return LogLevel.ERROR;
  return LogLevel.CRITICAL;
}

/*
 * MiniJSON cost of {encoding: 'base64-gzip', content} beyond the content's characters:
 * map header 1 + key "encoding" 9 + "base64-gzip" 12 + key "content" 8 + string header <= 5;
 * a plain string message costs its bytes plus a header of at least 1.
 */
const COMPRESSED_OVERHEAD = 34;

/** The message as is, or gzip+base64 when that encodes shorter. */
export function packMessage(message: string, compressFrom = 256): LogRecord['message'] {
  const size = Buffer.byteLength(message);
  if (size < compressFrom) return message;
  const content = gzipSync(message).toString('base64');
  return content.length + COMPRESSED_OVERHEAD < size ? { encoding: 'base64-gzip', content } : message;
}

/** Fields of a pino log that are not worth repeating in the message. */
const PINO_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'service', 'err', 'v']);

interface PinoError {
  message?: unknown;
  stack?: unknown;
}

export class LogShipper {
  /** Records dropped because the buffer was full. */
  dropped = 0;
  /** Lines that could not be turned into records (not JSON, or a failing hook). */
  failures = 0;
  readonly capacity: number;
  /**
   * A pino destination: pino(shipper.stream), pino(options, shipper.stream) or one stream of
   * pino(options, pino.multistream([...])). `writable` is what makes pino take it as a
   * destination when it is the only argument.
   */
  readonly stream = { writable: true as const, write: (line: string) => this.addLine(line) };

  private readonly service: string;
  private readonly compressFrom: number;
  private readonly now: () => number;
  private readonly onRecord?: (buffered: number) => void;
  private readonly maxBatchRecords: number;
  private readonly maxBatchAgeMs: number;
  /** When the oldest buffered record came (clock of `now`). */
  private oldestAt = 0;
  private lastWhen = 0;
  /** Ring buffer: `count` records from `head`. */
  private readonly ring: (LogRecord | undefined)[];
  private head = 0;
  private count = 0;

  constructor(options: LogShipperOptions = {}) {
    this.service = options.service ?? 'device';
    this.capacity = options.capacity ?? 1000;
    this.compressFrom = options.compressFrom ?? 256;
    this.now = options.now ?? Date.now;
    this.onRecord = options.onRecord;
    this.maxBatchRecords = options.maxBatchRecords ?? DEFAULT_LOG_BATCH.maxBatchRecords;
    this.maxBatchAgeMs = options.maxBatchAgeMs ?? DEFAULT_LOG_BATCH.maxBatchAgeMs;
    this.ring = new Array(this.capacity);
  }

  /** Records waiting to be sent. */
  get size(): number {
    return this.count;
  }

  /** Adds one pino JSON line (what pino writes to its destination). Never throws. */
  addLine(line: string): void {
    let log: Record<string, unknown>;
    try {
      log = JSON.parse(line);
    } catch {
      log = { level: 30, msg: line.trimEnd() };
    }
    this.add(log);
  }

  /** Adds one log object (pino's shape: level, time, msg, err, ...). Never throws. */
  add(log: Record<string, unknown>): void {
    try {
      this.enqueue(this.toRecord(log));
      this.onRecord?.(this.count);
    } catch {
      this.failures++;
    }
  }

  /** Converts a pino log object to a LOGS record, advancing the device's µs clock. */
  toRecord(log: Record<string, unknown>): LogRecord {
    const err = (typeof log.err === 'object' && log.err !== null ? log.err : undefined) as PinoError | undefined;
    let message = typeof log.msg === 'string' ? log.msg : typeof err?.message === 'string' ? err.message : '';
    const extra: Record<string, unknown> = {};
    let hasExtra = false;
    for (const key in log) {
      if (!PINO_FIELDS.has(key)) {
        extra[key] = log[key];
        hasExtra = true;
      }
    }
    if (hasExtra) message += (message ? ' ' : '') + safeJson(extra);
    const record: LogRecord = {
      service: typeof log.service === 'string' ? log.service : typeof log.name === 'string' ? log.name : this.service,
      when: this.nextWhen(typeof log.time === 'number' ? log.time : this.now()),
      message: packMessage(message, this.compressFrom),
      level: ngttLevel(typeof log.level === 'number' ? log.level : 30),
    };
    if (err) {
      const text = typeof err.stack === 'string' ? err.stack : typeof err.message === 'string' ? err.message : undefined;
      if (text !== undefined) record.exception_text = text;
    }
    return record;
  }

  /** Adds records as they are (already LOGS records). Never throws. */
  push(records: LogRecord[]): void {
    for (const r of records) this.enqueue(r);
    try {
      if (records.length) this.onRecord?.(this.count);
    } catch {
      this.failures++;
    }
  }

  /**
   * The next batch when one is due (maxBatchRecords buffered, the oldest maxBatchAgeMs old, or
   * `flush`); otherwise no records and, while any are buffered, when to ask again.
   */
  next(options: { flush?: boolean } = {}): { records: LogRecord[]; dueInMs?: number } {
    if (this.count === 0) return { records: [] };
    const wait = this.oldestAt + this.maxBatchAgeMs - this.now();
    if (!options.flush && this.count < this.maxBatchRecords && wait > 0) return { records: [], dueInMs: wait };
    const records = this.drain(this.maxBatchRecords);
    if (this.count === 0) return { records };
    // The rest waits its own age (we keep no time per record).
    this.oldestAt = this.now();
    return { records, dueInMs: this.maxBatchAgeMs };
  }

  /** Takes up to `max` records, oldest first. */
  drain(max = Infinity): LogRecord[] {
    const n = Math.min(max, this.count);
    const out: LogRecord[] = new Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.ring[this.head]!;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
    }
    this.count -= n;
    return out;
  }

  private enqueue(record: LogRecord): void {
    if (this.count === 0) this.oldestAt = this.now();
    if (this.count === this.capacity) {
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      this.dropped++;
    }
    this.ring[(this.head + this.count) % this.capacity] = record;
    this.count++;
  }

  /** Unix µs, strictly increasing even when logs share a millisecond or the clock steps back. */
  private nextWhen(timeMs: number): number {
    this.lastWhen = Math.max(Math.floor(timeMs * 1000), this.lastWhen + 1);
    return this.lastWhen;
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return '[unserializable]';
  }
}
