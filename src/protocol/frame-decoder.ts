import { ProtocolError } from './errors.js';
import { DEFAULT_MAX_FRAME_LENGTH, HEADER_SIZE, type Frame } from './frames.js';

export interface FrameDecoderOptions {
  /** Largest payload accepted; a header announcing more is an error before anything is buffered. */
  maxFrameLength?: number;
}

/**
 * Incremental frame parser: feed it chunks of any size, get whole frames back. Like ws's
 * Receiver, it keeps the received chunks as they are and copies only when a frame spans them.
 * After it has thrown, it stays failed: the connection must be closed.
 */
export class FrameDecoder {
  readonly maxFrameLength: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Payload length of the frame whose header has been read, or -1 while waiting for a header. */
  private pendingLength = -1;
  private pendingTid = 0;
  private pendingType = 0;
  private failed: ProtocolError | null = null;

  constructor(options: FrameDecoderOptions = {}) {
    this.maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
  }

  /** Bytes held that do not yet make a whole frame. */
  get bufferedBytes(): number {
    return this.buffered + (this.pendingLength >= 0 ? HEADER_SIZE : 0);
  }

  /** Adds a chunk; returns the frames it completed (possibly none). Throws ProtocolError. */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.length;
    for (;;) {
      if (this.pendingLength < 0) {
        if (this.buffered < HEADER_SIZE) break;
        const header = this.take(HEADER_SIZE);
        const length = header.readUInt32BE(0);
        if (length > this.maxFrameLength) {
          this.failed = new ProtocolError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameLength}`, 'FRAME_TOO_LARGE');
          this.chunks = [];
          this.buffered = 0;
          throw this.failed;
        }
        this.pendingLength = length;
        this.pendingTid = header.readUInt16BE(4);
        this.pendingType = header.readUInt16BE(6);
      }
      if (this.buffered < this.pendingLength) break;
      frames.push({ tid: this.pendingTid, type: this.pendingType, payload: this.take(this.pendingLength) });
      this.pendingLength = -1;
    }
    return frames;
  }

  /** Removes n buffered bytes; a view when they sit in one chunk, else one copy. */
  private take(n: number): Buffer {
    this.buffered -= n;
    if (n === 0) return EMPTY;
    const first = this.chunks[0];
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const want = n - filled;
      if (c.length <= want) {
        out.set(c, filled);
        filled += c.length;
        this.chunks.shift();
      } else {
        out.set(c.subarray(0, want), filled);
        this.chunks[0] = c.subarray(want);
        filled += want;
      }
    }
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
