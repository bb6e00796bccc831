/**
 * Outgoing frames of one NGTT connection. To a device that parses one frame per read, each
 * frame goes in TLS records of its own (spec §12); a device that offered the ALPN id
 * `ngtt-stream` (NGTT_STREAM_ALPN: it parses every frame it reads) gets plain socket writes.
 *
 * Why records matter: the original Python client, each time `select` says its socket is
 * readable, reads 512 bytes and parses AT MOST ONE frame. Its TLS library returns one record per
 * read, and the socket only becomes readable again while whole records wait in the kernel; so a
 * frame that shares a record with the frame before it stays in the client's buffer until
 * unrelated traffic arrives, maybe 30 s later. Hence, for such a device:
 *
 * - One `socket.write` per frame, and the next only once the previous one has completed: Node
 *   queues writes issued while one is in progress and hands them to TLS together (writev),
 *   which encrypts them as ONE record. Never `cork()` these sockets, for the same reason.
 * - Records of at most 512 bytes of plaintext (`setMaxSendFragment(512)`): a longer frame is
 *   split so that each of the client's 512-byte reads takes one whole record and the rest waits
 *   in the kernel, where its `select` sees it.
 *
 * Nagle's algorithm does not merge records (it merges TCP segments; a record stays a record),
 * but with writes one after the other it would hold back the second small record until the
 * first is acknowledged, so the socket runs with TCP_NODELAY. The price is one SSL_write and one
 * write(2) per frame, ≈ 9 µs of server CPU against ≈ 0.3 µs when replies share a record; that
 * is why a device that can take coalesced frames says so with ALPN.
 */
import type { TLSSocket } from 'node:tls';
import { NGTT_STREAM_ALPN } from '../protocol/index.js';

/** The smallest TLS fragment OpenSSL accepts, and what the original client reads at a time. */
export const RECORD_PLAINTEXT_LIMIT = 512;

export class FrameWriter {
  /** True when every frame gets records of its own (the device did not offer NGTT_STREAM_ALPN). */
  readonly recordPerFrame: boolean;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private writing = false;
  private drainWaiters: (() => void)[] = [];

  /**
   * @param highWaterMark bytes waiting (queued here, or in the socket) above which `write`
   *   returns false and the caller should wait for `drained()`.
   */
  constructor(
    private readonly socket: TLSSocket,
    private readonly highWaterMark = 64 * 1024,
  ) {
    this.recordPerFrame = socket.alpnProtocol !== NGTT_STREAM_ALPN;
    socket.setNoDelay(true);
    if (this.recordPerFrame) socket.setMaxSendFragment(RECORD_PLAINTEXT_LIMIT);
    socket.on('drain', () => this.wakeIfRoom());
    socket.once('close', () => this.release());
  }

  /** Bytes accepted and not yet handed to the kernel. */
  get pendingBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  /** Sends `frame` (one whole frame) after those before it; false when the caller should wait for `drained()`. */
  write(frame: Buffer): boolean {
    if (this.socket.destroyed) return true;
    if (!this.recordPerFrame) {
      this.socket.write(frame);
    } else if (this.writing) {
      this.queue.push(frame);
      this.queuedBytes += frame.length;
    } else {
      this.send(frame);
    }
    return this.pendingBytes < this.highWaterMark;
  }

  /** Sends several whole frames, in order: in one write when the device takes frames together. */
  writeAll(frames: Buffer[]): boolean {
    if (frames.length === 0) return this.pendingBytes < this.highWaterMark;
    if (this.recordPerFrame || frames.length === 1) {
      for (const frame of frames) this.write(frame);
      return this.pendingBytes < this.highWaterMark;
    }
    return this.write(Buffer.concat(frames));
  }

  /** Resolves once the backlog is below the high-water mark again (or the socket is gone). */
  drained(): Promise<void> {
    if (this.socket.destroyed || this.pendingBytes < this.highWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private send(frame: Buffer): void {
    this.writing = true;
    this.socket.write(frame, (err) => this.onWritten(err));
  }

  private onWritten(err: Error | null | undefined): void {
    this.writing = false;
    if (err || this.socket.destroyed) return this.release();
    const next = this.queue.shift();
    if (next) {
      this.queuedBytes -= next.length;
      this.send(next);
    }
    this.wakeIfRoom();
  }

  private wakeIfRoom(): void {
    if (this.drainWaiters.length && this.pendingBytes < this.highWaterMark) this.release();
  }

  /** Wakes whoever waits for room; on a dead socket also drops the backlog. */
  private release(): void {
    if (this.socket.destroyed) {
      this.queue.length = 0;
      this.queuedBytes = 0;
    }
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}
