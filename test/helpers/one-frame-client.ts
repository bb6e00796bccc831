/**
 * The NGTT socket of the original Python client (smok-client, ngtt/uplink/connection.py and
 * thread.py), as far as reading goes: each time `select` says the socket is readable it calls
 * `recv(512)` on the TLS socket and parses AT MOST ONE frame from its buffer; frames left in the
 * buffer wait until the socket is readable again. Writes go out as they are queued (one send of
 * everything pending, like its w_buffer).
 *
 * The model of what is readable, faithful to OpenSSL without read-ahead:
 * - each 'data' event of a Node TLS socket is one TLS record (Node emits every SSL_read on its
 *   own, and SSL_read returns data of one record only); until the client reads it, it waits in
 *   the kernel, and while any record waits there the socket is readable;
 * - recv(512) returns the rest of the current record first (bytes the TLS library holds, which
 *   `select` cannot see), else up to 512 bytes of the next record.
 * When no record waits in the kernel the client is idle: if its buffer then holds a complete
 * frame, or its TLS library holds bytes, that traffic is stuck until something else arrives.
 * `stalls` counts such moments; a server that suits this client never causes one.
 */
import tls, { type TLSSocket } from 'node:tls';
import { encodeFrame, encodeValueFrame, HEADER_SIZE, type Frame } from '../../src/protocol/index.js';

const RECV_SIZE = 512;

export interface Stall {
  /** Complete frames in the client's buffer that it will not parse until more traffic comes. */
  framesWaiting: number;
  /** Bytes held inside the TLS library, invisible to select. */
  hiddenBytes: number;
}

export class OneFramePerReadClient {
  /** Frames parsed, in order. */
  readonly handled: Frame[] = [];
  readonly stalls: Stall[] = [];
  /** Plaintext bytes that have arrived (records), read or not. */
  bytesArrived = 0;
  /** Readable events (recv calls). */
  reads = 0;
  readonly closed: Promise<void>;
  /** Called for each parsed frame (e.g. to answer it, as the client's handlers would). */
  onFrame: (frame: Frame, client: OneFramePerReadClient) => void = () => {};
  private readonly unread: Buffer[] = [];
  private tlsHeld: Buffer = Buffer.alloc(0);
  private buffer: Buffer = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (record: Buffer) => {
      this.unread.push(record);
      this.bytesArrived += record.length;
      this.whileReadable();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number, creds: { ca: string; cert: string; key: string }, options: tls.ConnectionOptions = {}): Promise<OneFramePerReadClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...creds, ...options });
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        resolve(new OneFramePerReadClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Queues frames like the client's send_frame and sends them in one write. */
  send(...frames: [tid: number, type: number, value?: unknown][]): void {
    this.socket.write(Buffer.concat(frames.map(([tid, type, value]) => (value === undefined ? encodeFrame(tid, type) : encodeValueFrame(tid, type, value)))));
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits until `n` frames in all have been parsed (rejects after `timeoutMs`: traffic stuck). */
  async waitHandled(n: number, timeoutMs = 5000): Promise<Frame[]> {
    await this.waitUntil(() => this.handled.length >= n, () => `${n} frames parsed`, timeoutMs);
    return this.handled.slice(0, n);
  }

  /** Waits until `bytes` plaintext bytes have arrived, parsed or not. */
  waitArrived(bytes: number, timeoutMs = 5000): Promise<void> {
    return this.waitUntil(() => this.bytesArrived >= bytes, () => `${bytes} bytes to arrive`, timeoutMs);
  }

  private waitUntil(cond: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (!cond()) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}; ${this.describe()}`));
      }, timeoutMs);
      this.waiters.add(wake);
    });
  }

  describe(): string {
    return `${this.handled.length} frames parsed from ${this.bytesArrived} bytes in ${this.reads} reads, ${this.stalls.length} stalls, ${this.framesInBuffer()} complete frames buffered, ${this.tlsHeld.length} bytes held by TLS`;
  }

  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }

  private whileReadable(): void {
    while (this.unread.length) this.readableEvent();
    const framesWaiting = this.framesInBuffer();
    if (framesWaiting || this.tlsHeld.length) this.stalls.push({ framesWaiting, hiddenBytes: this.tlsHeld.length });
    for (const wake of [...this.waiters]) wake();
  }

  /** One `recv(512)` and at most one frame parsed. */
  private readableEvent(): void {
    this.reads++;
    if (!this.tlsHeld.length) this.tlsHeld = this.unread.shift()!;
    const got = this.tlsHeld.subarray(0, RECV_SIZE);
    this.tlsHeld = this.tlsHeld.subarray(got.length);
    this.buffer = Buffer.concat([this.buffer, got]);
    const frame = this.parseOne();
    if (frame) this.onFrame(frame, this);
  }

  private parseOne(): Frame | null {
    if (this.buffer.length < HEADER_SIZE) return null;
    const length = this.buffer.readUInt32BE(0);
    if (this.buffer.length < HEADER_SIZE + length) return null;
    const frame = { tid: this.buffer.readUInt16BE(4), type: this.buffer.readUInt16BE(6), payload: Buffer.from(this.buffer.subarray(HEADER_SIZE, HEADER_SIZE + length)) };
    this.buffer = this.buffer.subarray(HEADER_SIZE + length);
    this.handled.push(frame);
    return frame;
  }

  private framesInBuffer(): number {
    let n = 0;
    let at = 0;
    while (this.buffer.length - at >= HEADER_SIZE && this.buffer.length - at >= HEADER_SIZE + this.buffer.readUInt32BE(at)) {
      at += HEADER_SIZE + this.buffer.readUInt32BE(at);
      n++;
    }
    return n;
  }
}
