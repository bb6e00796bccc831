/**
 * NgttConnection: NGTT alone, without the supervisor, spool or HTTPS (for software that wants
 * only the connection object, like the original package's). It runs the same machines as
 * NgttDevice — the connection machine and socket actor (keepalive, reconnect with backoff),
 * the upload machine (pipelined DATA_STREAMs within a window, resent after a reconnect) and the
 * logs machine (one LOGS batch out at a time, kept until its receipt) — over an in-memory queue
 * instead of the spool.
 * Nothing is durable here: that is NgttDevice's job.
 *
 *   const c = await NgttConnection.connect({ host, port, ca, cert, key });
 *   c.onOrder(async (order) => { await run(order.sections); order.ack(); });
 *   await c.syncPathpoints([{ path: 'W1', values: [[Date.now(), 1]] }]);
 *
 * An order handler that throws (or whose promise rejects) before answering gets its order
 * rejected with the error's message, and the error is reported as a 'fault' event: it is
 * neither redelivered in a loop nor lost silently.
 */
import { EventEmitter } from 'node:events';
import { type Actor, createActor, fromPromise } from 'xstate';
import { type BackoffOptions, type InFrame, type OutFrame, errorText } from '../../machines/common.js';
import { type ConnectionReport, type ConnectionState, connectionMachine } from '../../machines/connection.js';
import { type LogsReport, type NextLogs, LOGS_RECEIPT_TID, logsMachine } from '../../machines/logs.js';
import { type NextBatches, type NextBatchesInput, type SettledBatch, type BatchSettlement, type UploadReport, answersOf, uploadMachine } from '../../machines/upload.js';
import { encode } from '../minijson/index.js';
import { FrameType, parseSections, type LogRecord, type ParsedSections, type PathpointSeries } from '../protocol/index.js';
import { emitIsolated } from './isolated-emit.js';
import { LogShipper } from './log-shipper.js';
import { socketActor } from './socket-actor.js';
import { ConnectionClosedError, type NgttConnectOptions } from './tls-transport.js';
import { stopChildrenOf, stopOrphansOf } from './orphans.js';

export interface NgttConnectionOptions extends NgttConnectOptions {
  /** Send FETCH_ORDERS on every connection (else the server pushes no orders). Default true. */
  wantOrders?: boolean;
  /** Spec §5.5 defaults: PING after 30 s without sending; dead after 90 s / 120 s. */
  pingIdleMs?: number;
  pingDeadMs?: number;
  receiveDeadMs?: number;
  backoff?: Partial<BackoffOptions>;
  /** DATA_STREAMs unanswered at once. Default 256. */
  window?: number;
  /** Log records buffered while they cannot be sent (the oldest are dropped beyond). Default 1000. */
  maxBufferedLogs?: number;
  random?: () => number;
}

export interface NgttOrder extends ParsedSections {
  tid: number;
  /** ORDER_CONFIRM. A no-op when the connection it came on is gone (the server sends it again). */
  ack(): void;
  /** ORDER_REJECT. */
  nack(reason?: string): void;
}

export class DataStreamRejectedError extends Error {
  override name = 'DataStreamRejectedError';
}

export interface NgttConnectionFault {
  source: 'order-handler' | 'listener' | 'connection' | 'upload' | 'logs';
  message: string;
  error: Error;
}

export interface NgttConnectionEvents {
  connected: [];
  disconnected: [error: Error | undefined];
  /** The connection machine's state: connecting, authenticated, backoff, closing, closed. */
  state: [state: ConnectionState];
  /** Something went wrong and was contained (a throwing order handler or listener, say). */
  fault: [fault: NgttConnectionFault];
}

export const DEFAULT_CONNECTION_WINDOW = 256;

interface Sync {
  encoded: Uint8Array;
  resolve(): void;
  reject(error: Error): void;
}

/** The upload machine's batch source: each sync is one batch, due at once. */
class SyncQueue {
  private nextId = 1;
  private readonly waiting = new Map<number, Sync>();

  add(encoded: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.waiting.set(this.nextId++, { encoded, resolve, reject }));
  }

  next({ max, exclude }: NextBatchesInput): NextBatches {
    const skip = new Set(exclude);
    const batches: NextBatches['batches'] = [];
    for (const [id, sync] of this.waiting) {
      if (batches.length >= max) break;
      if (!skip.has(id)) batches.push({ id, values: 1, encoded: sync.encoded });
    }
    return { batches };
  }

  settle(settlements: BatchSettlement[]): SettledBatch[] {
    return settlements.map((s) => {
      const sync = this.waiting.get(s.id);
      this.waiting.delete(s.id);
      if (s.outcome === 'confirmed') sync?.resolve();
      else sync?.reject(new DataStreamRejectedError(s.reason ?? 'rejected'));
      return { ...s, values: sync ? 1 : 0 };
    });
  }

  rejectAll(error: Error): void {
    for (const sync of this.waiting.values()) sync.reject(error);
    this.waiting.clear();
  }
}

export class NgttConnection extends EventEmitter<NgttConnectionEvents> {
  private readonly connection: Actor<typeof connectionMachine>;
  private readonly upload: Actor<typeof uploadMachine>;
  private readonly logs: Actor<typeof logsMachine>;
  private readonly syncs = new SyncQueue();
  private readonly logBuffer: LogShipper;
  private orderHandler?: (order: NgttOrder) => unknown;
  private current: ConnectionState = 'disconnected';
  private epoch = 0;
  private closed = false;
  private dataScheduled = false;
  private lastError?: Error;
  private first?: { resolve(): void; reject(error: Error): void };
  private done?: () => void;

  private constructor(options: NgttConnectionOptions) {
    super();
    this.logBuffer = new LogShipper({ capacity: options.maxBufferedLogs, maxBatchAgeMs: 0 });
    const report = (_: unknown, params: ConnectionReport | UploadReport | LogsReport) => this.route(params);
    this.connection = createActor(
      connectionMachine.provide({
        actors: {
          socket: socketActor({
            connect: options,
            onSocketError: (error) => (this.lastError = error),
            onBadFrame: (type, error) => this.fault('connection', `frame type ${type} could not be encoded: ${error.message}`, error),
          }),
        },
        actions: { report },
      }),
      {
        inspect: stopOrphansOf, // a failed connection machine must not leave its socket open
        input: {
          wantOrders: options.wantOrders ?? true,
          random: options.random ?? Math.random,
          timings: {
            pingIdleMs: options.pingIdleMs,
            pingDeadMs: options.pingDeadMs,
            receiveDeadMs: options.receiveDeadMs,
            connectTimeoutMs: options.connectTimeoutMs,
            backoff: options.backoff,
          },
        },
      },
    );
    this.upload = createActor(
      uploadMachine.provide({
        actors: {
          nextBatches: fromPromise<NextBatches, NextBatchesInput>(async ({ input }) => this.syncs.next(input)),
          settleBatches: fromPromise<SettledBatch[], { settlements: BatchSettlement[] }>(async ({ input }) => this.syncs.settle(input.settlements)),
        },
        actions: { report },
      }),
      { input: { random: options.random ?? Math.random, options: { window: options.window ?? DEFAULT_CONNECTION_WINDOW } } },
    );
    this.logs = createActor(
      logsMachine.provide({
        actors: { nextLogs: fromPromise<NextLogs, { flush: boolean }>(async ({ input }) => this.logBuffer.next(input)) },
        actions: { report },
      }),
      { input: { random: options.random ?? Math.random } },
    );
    // Their actions are ours and guarded; should one fail anyway, it is said, not thrown.
    const failed = (source: NgttConnectionFault['source']) => (error: unknown) => this.fault(source, `machine failed: ${errorText(error)}`, error);
    this.connection.subscribe({
      error: (error) => {
        stopChildrenOf(this.connection); // its socket must not outlive it
        failed('connection')(error);
      },
    });
    this.upload.subscribe({ error: failed('upload') });
    this.logs.subscribe({ error: failed('logs') });
  }

  /** Resolves once connected; rejects with the connect error if that first attempt fails (later drops reconnect by themselves). */
  static async connect(options: NgttConnectionOptions): Promise<NgttConnection> {
    const c = new NgttConnection(options);
    const first = new Promise<void>((resolve, reject) => (c.first = { resolve, reject }));
    c.upload.start();
    c.logs.start();
    c.connection.start();
    c.connection.send({ type: 'CONNECT' });
    try {
      await first;
    } catch (error) {
      c.stopAll();
      throw error;
    }
    return c;
  }

  get connected(): boolean {
    return this.current === 'authenticated';
  }

  /** The connection machine's state now. */
  get state(): ConnectionState {
    return this.current;
  }

  /**
   * Called for every ORDER (redeliveries included: dedupe by `order.id` if it matters). If it
   * throws, or returns a promise that rejects, before answering, the order is rejected with
   * the error's message and a 'fault' is emitted.
   */
  onOrder(handler: (order: NgttOrder) => unknown): void {
    this.orderHandler = handler;
  }

  /** Resolves on DATA_STREAM_CONFIRM, rejects with DataStreamRejectedError on REJECT. Many may be in flight (`window`). */
  syncPathpoints(series: PathpointSeries[]): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionClosedError());
    let encoded: Uint8Array;
    try {
      encoded = encode(series);
    } catch (error) {
      return Promise.reject(error);
    }
    const done = this.syncs.add(encoded);
    // Many syncs started in one turn are one DATA for the upload machine.
    if (!this.dataScheduled) {
      this.dataScheduled = true;
      queueMicrotask(() => {
        this.dataScheduled = false;
        this.upload.send({ type: 'DATA' });
      });
    }
    return done;
  }

  /**
   * False when not connected (the records are not kept). One batch is out at a time and kept
   * until the server's receipt (sent again after a reconnect otherwise); more records wait in a
   * bounded buffer that drops its oldest when full.
   */
  streamLogs(records: LogRecord[]): boolean {
    if (!this.connected) return false;
    this.logBuffer.push(records);
    this.logs.send({ type: 'LOGS' });
    return true;
  }

  /** Closes for good; unanswered syncs reject with ConnectionClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.syncs.rejectAll(new ConnectionClosedError());
    const closed = new Promise<void>((resolve) => (this.done = resolve));
    this.connection.send({ type: 'CLOSE' });
    // The machine ends in `closed` (after the socket drained, or closeTimeoutMs at the latest).
    if (this.current !== 'closed' && this.connection.getSnapshot().status === 'active') await closed;
    this.stopAll();
  }

  // ---- routing between the machines -----------------------------------------------------------

  /** What the machines report. Runs inside their actions: it must not throw. */
  private route(report: ConnectionReport | UploadReport | LogsReport): void {
    try {
      switch (report.type) {
        case 'CONNECTION.STATE':
          return this.stateChanged(report.state, report.epoch, report.reason);
        case 'CONNECTION.FRAMES':
          return this.frames(report.epoch, report.frames);
        case 'TRANSMIT':
          return this.send(report.frame);
        case 'FAULT':
          return this.fault(report.source.startsWith('logs') ? 'logs' : 'upload', report.error, new Error(report.error));
        case 'BATCH.SETTLED':
        case 'LOGS.SETTLED':
        case 'RECOVERED':
          return;
      }
    } catch (error) {
      this.fault('connection', `routing ${report.type} failed: ${errorText(error)}`, error);
    }
  }

  private stateChanged(state: ConnectionState, epoch: number, reason?: string): void {
    const was = this.current;
    this.current = state;
    const up = state === 'authenticated';
    if (up) {
      this.epoch = epoch;
      this.lastError = undefined;
    }
    const link = up ? ('ngtt' as const) : ('none' as const);
    this.upload.send({ type: 'LINK', link });
    this.logs.send({ type: 'LINK', link });
    // Listeners run after the machine's step, so their exceptions (caught) never reach it.
    queueMicrotask(() => {
      this.emit('state', state);
      if (up) this.emit('connected');
      // Why the link went: the socket's error, or the keepalive's verdict ('PING not answered').
      else if (was === 'authenticated') this.emit('disconnected', this.lastError ?? (reason ? new Error(reason) : undefined));
    });
    if (this.first && up) {
      this.first.resolve();
      this.first = undefined;
    } else if (this.first && state === 'backoff') {
      this.first.reject(this.lastError ?? new Error(reason ?? 'connect failed'));
      this.first = undefined;
    }
    if (state === 'closed') this.done?.();
  }

  private frames(epoch: number, frames: InFrame[]): void {
    const answers = answersOf(frames);
    if (answers.length) this.upload.send({ type: 'BATCH.ANSWERED', answers });
    for (const frame of frames) {
      if (frame.type === FrameType.ORDER) queueMicrotask(() => this.order(epoch, frame.tid, frame.payload));
      else if (frame.type === FrameType.PING && frame.tid === LOGS_RECEIPT_TID) this.logs.send({ type: 'LOGS.RECEIPT' });
    }
  }

  /** An answer goes only on the connection the order came in on, while it is up. */
  private send(frame: OutFrame, epoch?: number): void {
    if (!this.connected || (epoch !== undefined && epoch !== this.epoch)) return;
    this.connection.send({ type: 'SEND', frame });
  }

  private order(epoch: number, tid: number, payload: unknown): void {
    let answered = false;
    const answer = (type: FrameType, body?: { reason: string }) => {
      if (answered) return;
      answered = true;
      this.send({ type, tid, payload: body }, epoch);
    };
    let parsed: ParsedSections;
    try {
      parsed = parseSections(payload);
    } catch (error) {
      return answer(FrameType.ORDER_REJECT, { reason: `malformed order: ${(error as Error).message}` });
    }
    const order: NgttOrder = {
      ...parsed,
      tid,
      ack: () => answer(FrameType.ORDER_CONFIRM),
      nack: (reason) => answer(FrameType.ORDER_REJECT, reason === undefined ? undefined : { reason }),
    };
    const failed = (error: unknown) => {
      this.fault('order-handler', `order ${order.id ?? `tid ${tid}`}: the handler failed: ${errorText(error)}`, error);
      answer(FrameType.ORDER_REJECT, { reason: `handler failed: ${errorText(error)}` });
    };
    try {
      const result = this.orderHandler?.(order);
      if (result && typeof (result as Promise<unknown>).then === 'function') (result as Promise<unknown>).then(undefined, failed);
    } catch (error) {
      failed(error);
    }
  }

  private fault(source: NgttConnectionFault['source'], message: string, error?: unknown): void {
    const fault = { source, message, error: error instanceof Error ? error : new Error(message) };
    emitIsolated(this as EventEmitter, 'fault', [fault], () => {});
  }

  /** Every listener runs, each one's exception caught and reported as a 'listener' fault. */
  override emit<K>(eventName: keyof NgttConnectionEvents | K, ...args: K extends keyof NgttConnectionEvents ? NgttConnectionEvents[K] : never): boolean {
    return emitIsolated(this as EventEmitter, eventName as string, args, (error) => {
      if (eventName !== 'fault') this.fault('listener', `a '${String(eventName)}' listener threw: ${errorText(error)}`, error);
    });
  }

  private stopAll(): void {
    this.connection.stop();
    this.upload.stop();
    this.logs.stop();
  }
}
