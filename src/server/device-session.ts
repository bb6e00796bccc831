/**
 * One device's NGTT connection, after the TLS handshake and identity check: reads frames,
 * answers them (spec §4–§8) and closes the connection on protocol errors and silence.
 * Orders are handled by OrderDispatcher, uploads by UploadPipeline.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { decode } from '../minijson/index.js';
import {
  encodeValueFrame,
  FrameDecoder,
  FrameType,
  frameTypeName,
  parseBaobSyncRequest,
  parseLogRecords,
  parsePathpointData,
  ProtocolError,
  type BaobSyncResponse,
  type Frame,
} from '../protocol/index.js';
import { planBaobSync } from './baob-sync.js';
import type { DeviceCounters, LiveSession } from './device-registry.js';
import { FrameWriter } from './frame-writer.js';
import type { HeldLogs } from './held-logs.js';
import { OrderDispatcher } from './order-dispatcher.js';
import type { Store } from './store/index.js';
import { UploadPipeline } from './upload-pipeline.js';

export interface DeviceSessionOptions {
  deviceId: string;
  socket: TLSSocket;
  store: Store;
  window: number;
  idleTimeoutMs: number;
  maxFrameLength: number;
  logger: Logger;
  counters: DeviceCounters;
  /** Where log batches go that were received but could not be stored (shared by the process's sessions). */
  heldLogs: HeldLogs;
  /** Called once the connection is gone and its orders are requeued. */
  onClosed(session: DeviceSession): void;
}

/** Frames only the server sends; a device sending them is confused but harmless. */
const SERVER_FRAMES = new Set<number>([FrameType.ORDER, FrameType.DATA_STREAM_CONFIRM, FrameType.DATA_STREAM_REJECT, FrameType.SYNC_BAOB_RESPONSE]);

export class DeviceSession implements LiveSession {
  readonly deviceId: string;
  readonly connectedAt = Date.now();
  readonly remoteAddress: string;
  private readonly socket: TLSSocket;
  /** Every frame to the device goes through it: one TLS record per frame (spec §12). */
  private readonly writer: FrameWriter;
  private readonly log: Logger;
  private readonly counters: DeviceCounters;
  private readonly decoder: FrameDecoder;
  private readonly uploads: UploadPipeline;
  private dispatcher: OrderDispatcher | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly readPauses = new Set<string>();
  /** Closing after the store went away: only LOGS still read, into the held logs. */
  private draining = false;
  private readonly closed: Promise<void>;

  constructor(private readonly o: DeviceSessionOptions) {
    this.deviceId = o.deviceId;
    this.socket = o.socket;
    this.writer = new FrameWriter(o.socket);
    this.remoteAddress = `${o.socket.remoteAddress}:${o.socket.remotePort}`;
    this.log = o.logger;
    this.counters = o.counters;
    this.decoder = new FrameDecoder({ maxFrameLength: o.maxFrameLength });
    this.uploads = new UploadPipeline({
      deviceId: o.deviceId,
      store: o.store,
      counters: o.counters,
      heldLogs: o.heldLogs,
      write: (frames) => this.write(frames),
      setReadPaused: (paused) => this.pauseReading('uploads', paused),
      onFailure: (e) => this.fail('storing uploads failed', e),
    });
    this.closed = new Promise((resolve) => {
      this.socket.once('close', () => void this.cleanUp().finally(resolve));
    });
    this.socket.on('error', (e) => this.log.debug({ err: e }, 'socket error'));
  }

  /** Opens the device's order source and starts reading. Null if the connection died meanwhile. */
  async start(): Promise<DeviceSession | null> {
    const source = await this.o.store.openOrderSource(this.deviceId, { prefetch: this.o.window });
    this.dispatcher = new OrderDispatcher({
      source,
      window: this.o.window,
      write: (frame) => this.write(frame),
      waitForDrain: () => this.writer.drained(),
      onFailure: (e) => this.fail('order source failed', e),
      // A fleet routine, not a fault: the device's newer connection is on another gateway.
      onRevoked: (reason) => {
        this.log.info({ reason: reason.message }, 'device connected elsewhere; closing this connection');
        void this.close('replaced by a connection on another gateway');
      },
      counters: this.counters,
    });
    if (this.socket.destroyed) {
      await this.dispatcher.stop();
      return null;
    }
    this.counters.connections++;
    this.idleTimer = setTimeout(() => this.onIdle(), this.o.idleTimeoutMs);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // recordPerFrame: the device did not offer ngtt-stream (the original client): one TLS record per frame.
    this.log.info({ recordPerFrame: this.writer.recordPerFrame }, 'device connected');
    return this;
  }

  /**
   * Closes the connection. With `drainLogsMs`, first reads what the device already sent: LOGS
   * have no reply (spec §7), so for a client that sends no receipt PING behind them (the
   * original client) a batch left unread in the socket when it is destroyed is lost for good.
   * The connection is ended (the device sees it close and keeps everything else for
   * its next connection), LOGS read until the device's side closes go to the held logs, other
   * frames are ignored (unconfirmed data and orders are sent again), and after `drainLogsMs`
   * the socket is destroyed anyway.
   */
  async close(reason: string, options: { drainLogsMs?: number } = {}): Promise<void> {
    if (!this.socket.destroyed) this.log.info({ reason }, 'closing connection');
    if (options.drainLogsMs && !this.socket.destroyed && !this.draining) {
      this.draining = true;
      this.uploads.stop();
      this.readPauses.clear();
      this.socket.resume();
      this.socket.end();
      const timer = setTimeout(() => this.socket.destroy(), options.drainLogsMs);
      await this.closed;
      clearTimeout(timer);
      return;
    }
    this.socket.destroy();
    await this.closed;
  }

  private async cleanUp(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.uploads.stop();
    try {
      await this.dispatcher?.stop();
    } catch (e) {
      this.log.error({ err: e }, 'could not requeue unsettled orders');
    }
    this.log.info('device disconnected');
    this.o.onClosed(this);
  }

  private onIdle(): void {
    this.log.warn({ idleTimeoutMs: this.o.idleTimeoutMs }, 'device silent past the idle timeout');
    void this.close('idle timeout');
  }

  private onData(chunk: Buffer): void {
    this.idleTimer?.refresh();
    this.counters.lastSeen = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      return this.protocolError(e);
    }
    for (const frame of frames) {
      if (this.socket.destroyed) return;
      try {
        this.onFrame(frame);
      } catch (e) {
        return this.protocolError(e);
      }
    }
  }

  private onFrame({ tid, type, payload }: Frame): void {
    if (this.draining) {
      if (type === FrameType.LOGS) this.o.heldLogs.hold(this.deviceId, [parseLogRecords(decode(payload))]);
      return;
    }
    switch (type) {
      case FrameType.PING:
        this.counters.pings++;
        // Echoed after the uploads before it are stored: the echo is also a receipt for LOGS.
        this.uploads.ping(tid);
        return;
      case FrameType.FETCH_ORDERS:
        this.dispatcher!.fetch();
        return;
      case FrameType.ORDER_CONFIRM:
        if (payload.length) decodeOrFail(payload, 'ORDER_CONFIRM'); // content is meaningless, garbage is not
        this.settle(tid, 'confirmed');
        return;
      case FrameType.ORDER_REJECT: {
        const body = payload.length ? decodeOrFail(payload, 'ORDER_REJECT') : undefined;
        const reason = typeof (body as { reason?: unknown })?.reason === 'string' ? (body as { reason: string }).reason : undefined;
        this.settle(tid, 'rejected', reason);
        return;
      }
      case FrameType.DATA_STREAM:
        return this.onDataStream(tid, payload);
      case FrameType.LOGS:
        return this.onLogs(payload);
      case FrameType.SYNC_BAOB_REQUEST:
        return this.onBaobSync(tid, payload);
      default:
        this.log.warn({ type, tid, name: frameTypeName(type), ignored: true }, SERVER_FRAMES.has(type) ? 'device sent a server-only frame' : 'unknown frame type');
    }
  }

  private settle(tid: number, outcome: 'confirmed' | 'rejected', reason?: string): void {
    this.dispatcher!.settle(tid, outcome, reason).catch((e) => (e instanceof ProtocolError ? this.protocolError(e) : this.fail('settling an order failed', e)));
  }

  private onDataStream(tid: number, payload: Buffer): void {
    let series;
    try {
      series = parsePathpointData(decode(payload));
    } catch (e) {
      this.log.warn({ tid, reason: (e as Error).message }, 'DATA_STREAM rejected');
      this.uploads.reject(tid, (e as Error).message);
      return;
    }
    this.uploads.data(tid, series, payload);
  }

  /**
   * SYNC_BAOB_REQUEST `{key: version}` → SYNC_BAOB_RESPONSE `{download, upload, delete}` (spec
   * §11; the bytes move over HTTPS). Answered when the store has; a malformed request closes the
   * connection (the frame type has no error reply), an unreachable BAOB store too (the device
   * syncs again after reconnecting).
   */
  private onBaobSync(tid: number, payload: Buffer): void {
    const versions = parseBaobSyncRequest(payload.length ? decodeOrFail(payload, 'SYNC_BAOB_REQUEST') : undefined);
    this.o.store.listBaobs(this.deviceId).then(
      (held) => {
        const plan = planBaobSync(held, versions);
        const response: BaobSyncResponse = { download: plan.download, upload: plan.upload, delete: plan.delete };
        this.write(encodeValueFrame(tid, FrameType.SYNC_BAOB_RESPONSE, response));
      },
      (e) => this.fail('BAOB sync failed', e),
    );
  }

  private onLogs(payload: Buffer): void {
    try {
      this.uploads.logs(parseLogRecords(decode(payload)), payload.length);
    } catch (e) {
      // LOGS has no reply (spec §7): a bad batch is dropped and noted.
      this.counters.logBatchesDropped++;
      this.log.warn({ reason: (e as Error).message }, 'malformed LOGS dropped');
    }
  }

  private write(frames: Buffer | Buffer[]): boolean {
    if (this.socket.destroyed) return true;
    const ok = Array.isArray(frames) ? this.writer.writeAll(frames) : this.writer.write(frames);
    // A device that does not read its replies must not make us buffer without end.
    if (!ok && !this.readPauses.has('replies')) {
      this.pauseReading('replies', true);
      void this.writer.drained().then(() => this.pauseReading('replies', false));
    }
    return ok;
  }

  private pauseReading(reason: string, paused: boolean): void {
    if (paused) this.readPauses.add(reason);
    else this.readPauses.delete(reason);
    if (this.readPauses.size) this.socket.pause();
    else this.socket.resume();
  }

  private protocolError(e: unknown): void {
    this.counters.protocolErrors++;
    this.log.warn({ err: e }, 'protocol error; closing the connection');
    void this.close('protocol error');
  }

  private fail(what: string, e: unknown): void {
    this.log.error({ err: e }, `${what}; closing the connection`);
    // The store or the order source failed, not the device: read the LOGS it already sent first.
    void this.close(what, { drainLogsMs: 2_000 });
  }
}

function decodeOrFail(payload: Buffer, frame: string): unknown {
  try {
    return decode(payload);
  } catch (e) {
    throw new ProtocolError(`${frame} payload is not MiniJSON: ${(e as Error).message}`, 'BAD_PAYLOAD');
  }
}
