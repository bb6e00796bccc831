/**
 * The device's NGTT connection (spec §2–§3): mutual TLS, frames in both directions, explicit
 * backpressure, and the timestamps and counters keepalive (§5.5) and the demo need.
 * Policy (what to send when, keepalive, reconnects) belongs to the machines that drive it.
 */
import { EventEmitter } from 'node:events';
import * as tls from 'node:tls';
import { encodeFrame, encodeFrameHeader, encodeValueFrame, FrameDecoder, NGTT_STREAM_ALPN, type Frame } from '../protocol/index.js';
import { deviceTlsOptions, type DeviceTlsOptions } from './tls-material.js';

export const DEFAULT_NGTT_PORT = 2405;
export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
/**
 * From this payload size on, sendEncoded writes header and payload separately: copying them
 * into one buffer costs an allocation outside Node's buffer pool and more GC than the second write.
 */
const SEPARATE_PAYLOAD_MIN = 4096;

/** Called once a frame was handed to the kernel, with an error if the connection went first. */
export type Flushed = (error?: Error | null) => void;

export interface NgttConnectOptions extends DeviceTlsOptions {
  host: string;
  port?: number;
  /** Largest incoming payload; a bigger frame closes the connection (spec §3). Default 16 MiB. */
  maxFrameLength?: number;
  /** TCP connect plus TLS handshake. Default 15 s. */
  connectTimeoutMs?: number;
  /** Aborting it gives the connect up at once (the caller no longer wants it). */
  signal?: AbortSignal;
  /** Clock for lastSentAt/lastReceivedAt (ms). Default Date.now. */
  now?: () => number;
}

export interface NgttSocketEvents {
  /** One whole incoming frame; `payload` may be a view of the received chunk. */
  frame: [frame: Frame];
  /** The kernel took everything buffered: send freely again. */
  drain: [];
  /** Once, when the connection is gone; `error` unless close() ended it (a peer's end is an error too). */
  close: [error: Error | undefined];
}

/** Thrown by drain()/close() waiters when the connection is gone. */
export class ConnectionClosedError extends Error {
  override name = 'ConnectionClosedError';
  constructor(readonly reason?: Error) {
    super(reason ? `connection closed: ${reason.message}` : 'connection closed', { cause: reason });
  }
}

export class NgttSocket extends EventEmitter<NgttSocketEvents> {
  /** Frame bytes (headers included) handed to send() and received whole or in part. */
  bytesSent = 0;
  bytesReceived = 0;
  framesSent = 0;
  framesReceived = 0;
  /** When send() or a received chunk last happened (clock of the `now` option). */
  lastSentAt: number;
  lastReceivedAt: number;

  private readonly decoder: FrameDecoder;
  private readonly now: () => number;
  private closeError: Error | undefined;
  private closedFlag = false;
  private closing = false;

  private constructor(
    private readonly socket: tls.TLSSocket,
    options: NgttConnectOptions,
  ) {
    super();
    this.now = options.now ?? Date.now;
    this.lastSentAt = this.lastReceivedAt = this.now();
    this.decoder = new FrameDecoder({ maxFrameLength: options.maxFrameLength });
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('error', (error) => {
      this.closeError ??= error;
    });
    // For the device an end it did not ask for is a failure (e.g. the server refusing the
    // certificate after a TLS 1.3 handshake): the caller reconnects with backoff.
    socket.on('end', () => {
      if (!this.closing) this.closeError ??= new Error('connection closed by the server');
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.emit('close', this.closeError);
    });
  }

  /** Resolves once the TLS handshake is done and the server certificate and host name verified. */
  static connect(options: NgttConnectOptions): Promise<NgttSocket> {
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const signal = options.signal;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(Object.assign(new Error('connect aborted'), { code: 'ABORT_ERR' }));
      // ALPN: this device parses every frame it reads, so the server need not give each its own TLS record.
      const socket = tls.connect({ ...deviceTlsOptions(options.host, options), port: options.port ?? DEFAULT_NGTT_PORT, ALPNProtocols: [NGTT_STREAM_ALPN] });
      const timer = setTimeout(() => socket.destroy(new Error(`connect to ${options.host} timed out after ${timeoutMs} ms`)), timeoutMs);
      const onAbort = () => socket.destroy(Object.assign(new Error('connect aborted'), { code: 'ABORT_ERR' }));
      signal?.addEventListener('abort', onAbort, { once: true });
      const settled = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const fail = (error: Error) => {
        settled();
        reject(error);
      };
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        settled();
        socket.off('error', fail);
        // rejectUnauthorized already refuses an unverified peer; this guards against a future option slip.
        if (!socket.authorized) {
          const error = socket.authorizationError ?? new Error('server certificate not authorized');
          socket.on('error', () => {}); // reported through reject below
          socket.destroy(error);
          reject(error);
          return;
        }
        // Orders and confirmations are tiny frames: Nagle would only add latency.
        socket.setNoDelay(true);
        resolve(new NgttSocket(socket, options));
      });
    });
  }

  get closed(): boolean {
    return this.closedFlag || this.socket.destroyed;
  }

  /** True while the kernel buffer is full: wait for drain() before sending more bulk data. */
  get needsDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /**
   * Queues an encoded frame. Returns false when the buffer is past its high-water mark (the
   * frame is still queued: wait for 'drain' before sending more) or when the connection is
   * closed (the frame is dropped). `flushed` is called once the frame was handed to the kernel
   * (with an error if the connection went first).
   */
  send(frame: Buffer, flushed?: Flushed): boolean {
    if (this.closed) {
      if (flushed) queueMicrotask(() => flushed(new ConnectionClosedError(this.closeError)));
      return false;
    }
    this.bytesSent += frame.length;
    this.framesSent++;
    this.lastSentAt = this.now();
    return this.socket.write(frame, flushed);
  }

  /** A frame whose payload is `value` as MiniJSON. */
  sendValue(tid: number, type: number, value: unknown, flushed?: Flushed): boolean {
    return this.send(encodeValueFrame(tid, type, value), flushed);
  }

  /**
   * A frame whose payload is already MiniJSON (a spooled batch, a sync sent again). A large
   * payload is not copied behind its header: header and payload go out in one corked write.
   */
  sendEncoded(tid: number, type: number, payload: Uint8Array, flushed?: Flushed): boolean {
    if (payload.length < SEPARATE_PAYLOAD_MIN || this.closed) return this.send(encodeFrame(tid, type, payload), flushed);
    const header = encodeFrameHeader(tid, type, payload.length);
    this.bytesSent += header.length + payload.length;
    this.framesSent++;
    this.lastSentAt = this.now();
    this.socket.cork();
    this.socket.write(header);
    const below = this.socket.write(payload, flushed);
    this.socket.uncork();
    return below;
  }

  /** A frame with an empty payload (PING, ORDER_CONFIRM, FETCH_ORDERS). */
  sendEmpty(tid: number, type: number, flushed?: Flushed): boolean {
    return this.send(encodeFrame(tid, type), flushed);
  }

  /** Resolves when sending may go on; rejects with ConnectionClosedError if the connection goes. */
  drain(): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionClosedError(this.closeError));
    if (!this.needsDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = (error: Error | undefined) => {
        this.off('drain', onDrain);
        reject(new ConnectionClosedError(error));
      };
      this.once('drain', onDrain);
      this.once('close', onClose);
    });
  }

  /** Sends what is queued, then closes (TLS close_notify, TCP FIN). Resolves on 'close'. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.once('close', () => resolve());
      this.closing = true;
      this.socket.end();
    });
  }

  /** Drops the connection at once; 'close' reports `error`. */
  destroy(error?: Error): void {
    if (error) this.closeError ??= error;
    this.socket.destroy(error);
  }

  private receive(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    this.lastReceivedAt = this.now();
    try {
      for (const frame of this.decoder.push(chunk)) {
        if (this.closed) return;
        this.framesReceived++;
        this.emit('frame', frame);
      }
    } catch (error) {
      // A protocol error (e.g. an oversize frame) or a throwing listener: the stream position
      // is lost either way, so the connection must go; the peer redelivers what was unconfirmed.
      this.destroy(error as Error);
    }
  }
}
