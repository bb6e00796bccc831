/**
 * NgttConnection: NGTT alone, without the supervisor, spool or HTTPS (for software that wants
 * only the connection object, like the original package's). Keeps itself alive (PING, spec
 * §5.5), reconnects with backoff (§5.6), pipelines DATA_STREAMs and sends unanswered ones
 * again after a reconnect. Nothing is durable here: that is NgttDevice's job.
 *
 *   const c = await NgttConnection.connect({ host, port, ca, cert, key });
 *   c.onOrder(async (order) => { ...; order.ack(); });
 *   await c.syncPathpoints([{ path: 'W1', values: [[Date.now(), 1]] }]);
 */
import { EventEmitter } from 'node:events';
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay } from '../../machines/common.js';
import { encode } from '../minijson/index.js';
import { FrameType, TidAllocator, parseSections, type Frame, type LogRecord, type ParsedSections, type PathpointSeries } from '../protocol/index.js';
import { decodePayload } from './socket-actor.js';
import { ConnectionClosedError, NgttSocket, type NgttConnectOptions } from './tls-transport.js';

export interface NgttConnectionOptions extends NgttConnectOptions {
  /** Send FETCH_ORDERS on every connection (else the server pushes no orders). Default true. */
  wantOrders?: boolean;
  /** Spec §5.5 defaults: PING after 30 s without sending; dead after 90 s / 120 s. */
  pingIdleMs?: number;
  pingDeadMs?: number;
  receiveDeadMs?: number;
  backoff?: Partial<BackoffOptions>;
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

export interface NgttConnectionEvents {
  connected: [];
  disconnected: [error: Error | undefined];
}

interface Sync {
  encoded: Uint8Array;
  /** Tid on the current connection, when sent on it. */
  tid?: number;
  resolve(): void;
  reject(error: Error): void;
}

export class NgttConnection extends EventEmitter<NgttConnectionEvents> {
  private socket?: NgttSocket;
  private readonly tids = new TidAllocator();
  /** Unanswered syncs in push order; those with a tid are on the wire. */
  private syncs: Sync[] = [];
  private orderHandler?: (order: NgttOrder) => void;
  private pingTid?: number;
  private lastDataSentAt = 0;
  private failures = 0;
  private closed = false;
  private timer?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private readonly backoff: BackoffOptions;

  private constructor(private readonly options: NgttConnectionOptions) {
    super();
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  }

  /** Resolves once connected; rejects if that first attempt fails (later drops reconnect by themselves). */
  static async connect(options: NgttConnectionOptions): Promise<NgttConnection> {
    const c = new NgttConnection(options);
    c.attach(await NgttSocket.connect(options));
    return c;
  }

  get connected(): boolean {
    return !!this.socket && !this.socket.closed;
  }

  /** Called for every ORDER (redeliveries included: dedupe by `order.id` if it matters). */
  onOrder(handler: (order: NgttOrder) => void): void {
    this.orderHandler = handler;
  }

  /** Resolves on DATA_STREAM_CONFIRM, rejects with DataStreamRejectedError on REJECT. Many may be in flight. */
  syncPathpoints(series: PathpointSeries[]): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionClosedError());
    return new Promise((resolve, reject) => {
      this.syncs.push({ encoded: encode(series), resolve, reject });
      this.sendSyncs();
    });
  }

  /** Best effort (spec §7): false when not connected (the records are not kept). */
  streamLogs(records: LogRecord[]): boolean {
    if (!this.connected) return false;
    this.write(true, (socket) => socket.sendValue(0, FrameType.LOGS, records));
    return true;
  }

  /** Closes for good; unanswered syncs reject with ConnectionClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.timer);
    for (const s of this.syncs.splice(0)) s.reject(new ConnectionClosedError());
    await this.socket?.close();
  }

  private attach(socket: NgttSocket): void {
    this.socket = socket;
    this.failures = 0;
    this.tids.reset();
    this.pingTid = undefined;
    this.lastDataSentAt = Date.now();
    for (const s of this.syncs) s.tid = undefined;
    socket.on('frame', (frame) => this.receive(socket, frame));
    socket.on('drain', () => this.sendSyncs());
    socket.on('close', (error) => this.lost(socket, error));
    const tick = Math.max(10, Math.min(1000, (this.options.pingIdleMs ?? 30_000) / 4));
    clearInterval(this.timer);
    this.timer = setInterval(() => this.keepalive(socket), tick).unref();
    if (this.options.wantOrders ?? true) this.write(true, (s) => s.sendEmpty(0, FrameType.FETCH_ORDERS));
    this.sendSyncs();
    this.emit('connected');
  }

  private write(isData: boolean, send: (socket: NgttSocket) => boolean): boolean {
    if (isData) this.lastDataSentAt = Date.now();
    return send(this.socket!);
  }

  /** Sends unanswered syncs that are not on the wire yet, while tids and the socket buffer allow. */
  private sendSyncs(): void {
    if (!this.connected) return;
    for (const s of this.syncs) {
      if (s.tid !== undefined) continue;
      if (this.socket!.needsDrain || this.tids.available === 0) return;
      const tid = (s.tid = this.tids.allocate());
      // The payload goes out as encoded, not copied behind the header (it may be sent again after a reconnect).
      this.write(true, (socket) => socket.sendEncoded(tid, FrameType.DATA_STREAM, s.encoded));
    }
  }

  private receive(socket: NgttSocket, frame: Frame): void {
    switch (frame.type) {
      case FrameType.PING:
        if (frame.tid === this.pingTid) (this.tids.free(frame.tid), (this.pingTid = undefined));
        return;
      case FrameType.DATA_STREAM_CONFIRM:
      case FrameType.DATA_STREAM_REJECT: {
        const i = this.syncs.findIndex((s) => s.tid === frame.tid);
        if (i < 0) return; // late or foreign
        const [sync] = this.syncs.splice(i, 1);
        this.tids.free(frame.tid);
        if (frame.type === FrameType.DATA_STREAM_CONFIRM) sync.resolve();
        else sync.reject(new DataStreamRejectedError(rejectReason(frame.payload)));
        this.sendSyncs();
        return;
      }
      case FrameType.ORDER:
        return this.order(socket, frame);
    }
  }

  private order(socket: NgttSocket, frame: Frame): void {
    const answer = (type: number, payload?: unknown) => {
      if (socket !== this.socket || socket.closed) return;
      this.write(true, (s) => (payload === undefined ? s.sendEmpty(frame.tid, type) : s.sendValue(frame.tid, type, payload)));
    };
    let parsed: ParsedSections;
    try {
      parsed = parseSections(decodePayload(frame.payload));
    } catch (error) {
      return answer(FrameType.ORDER_REJECT, { reason: `malformed order: ${(error as Error).message}` });
    }
    const order: NgttOrder = {
      ...parsed,
      tid: frame.tid,
      ack: () => answer(FrameType.ORDER_CONFIRM),
      nack: (reason) => answer(FrameType.ORDER_REJECT, reason === undefined ? undefined : { reason }),
    };
    this.orderHandler?.(order);
  }

  private keepalive(socket: NgttSocket): void {
    if (socket !== this.socket || socket.closed) return;
    const now = Date.now();
    const o = this.options;
    if (now - socket.lastReceivedAt >= (o.receiveDeadMs ?? 120_000)) return socket.destroy(new Error('nothing received'));
    if (this.pingTid !== undefined) {
      if (now - this.lastDataSentAt >= (o.pingDeadMs ?? 90_000)) socket.destroy(new Error('PING not answered'));
      return;
    }
    if (now - socket.lastSentAt >= (o.pingIdleMs ?? 30_000) && this.tids.available > 0) {
      this.pingTid = this.tids.allocate();
      const tid = this.pingTid;
      this.write(false, (s) => s.sendEmpty(tid, FrameType.PING));
    }
  }

  private lost(socket: NgttSocket, error: Error | undefined): void {
    if (socket !== this.socket) return;
    clearInterval(this.timer);
    this.emit('disconnected', error);
    if (!this.closed) this.reconnect();
  }

  private reconnect(): void {
    this.failures++;
    const delay = backoffDelay(this.failures, this.backoff, this.options.random ?? Math.random);
    this.reconnectTimer = setTimeout(() => {
      NgttSocket.connect(this.options).then(
        (socket) => (this.closed ? socket.destroy() : this.attach(socket)),
        () => !this.closed && this.reconnect(),
      );
    }, delay);
  }
}

function rejectReason(payload: Buffer): string {
  try {
    const reason = (decodePayload(payload) as { reason?: unknown } | undefined)?.reason;
    return typeof reason === 'string' ? reason : 'rejected';
  } catch {
    return 'rejected';
  }
}
