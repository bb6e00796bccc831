/**
 * A thin NGTT device for tests: real TLS, raw frames through src/protocol, nothing clever.
 * Received frames wait in an inbox until a test takes them.
 */
import tls, { type TLSSocket } from 'node:tls';
import { decode } from '../../src/minijson/index.js';
import { encodeFrame, encodeValueFrame, FrameDecoder, FrameType, type Frame, type WireSection } from '../../src/protocol/index.js';
import { within } from './wait.js';

export interface DeviceCredentials {
  ca: string;
  cert?: string;
  key?: string;
}

export interface ReceivedOrder {
  tid: number;
  id: string;
  sections: WireSection[];
}

export class RawDevice {
  private readonly decoder = new FrameDecoder();
  private inbox: Frame[] = [];
  private waiters: { match: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  /** Every frame received, in order (the inbox is what is not yet taken). */
  readonly received: Frame[] = [];
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) {
        const copy = { ...frame, payload: Buffer.from(frame.payload) };
        this.received.push(copy);
        const i = this.waiters.findIndex((w) => w.match(copy));
        if (i >= 0) this.waiters.splice(i, 1)[0].resolve(copy);
        else this.inbox.push(copy);
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** `localAddress`: another loopback source address (127.0.0.2, …) for per-source limits. */
  static connect(port: number, creds: DeviceCredentials, servername = 'localhost', localAddress?: string): Promise<RawDevice> {
    return new Promise((resolve, reject) => {
      // localAddress is passed on to net's connect (not in tls's option types).
      const socket = tls.connect({ host: '127.0.0.1', port, servername, localAddress, ca: creds.ca, cert: creds.cert, key: creds.key } as tls.ConnectionOptions);
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        resolve(new RawDevice(socket));
      });
      socket.once('error', reject);
    });
  }

  send(tid: number, type: number, value?: unknown): void {
    this.socket.write(value === undefined ? encodeFrame(tid, type) : encodeValueFrame(tid, type, value));
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The first received frame (not yet taken) that matches; waits for it. */
  take(match: (f: Frame) => boolean, what = 'a frame', timeoutMs = 5000): Promise<Frame> {
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    let waiter!: { match: (f: Frame) => boolean; resolve: (f: Frame) => void };
    const p = new Promise<Frame>((resolve) => this.waiters.push((waiter = { match, resolve })));
    return within(p, what, timeoutMs).finally(() => {
      const at = this.waiters.indexOf(waiter);
      if (at >= 0) this.waiters.splice(at, 1);
    });
  }

  takeType(type: number, tid?: number, timeoutMs?: number): Promise<Frame> {
    return this.take((f) => f.type === type && (tid === undefined || f.tid === tid), `frame type ${type}${tid === undefined ? '' : ` tid ${tid}`}`, timeoutMs);
  }

  async takeOrder(timeoutMs?: number): Promise<ReceivedOrder> {
    return toOrder(await this.takeType(FrameType.ORDER, undefined, timeoutMs));
  }

  async takeOrders(n: number): Promise<ReceivedOrder[]> {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.takeOrder());
    return out;
  }

  /** Frames received and not taken. */
  pending(type?: number): Frame[] {
    return this.inbox.filter((f) => type === undefined || f.type === type);
  }

  /** Round trip a PING: everything the server sent before the echo has then arrived. */
  async ping(tid = 0x7000): Promise<void> {
    this.send(tid, FrameType.PING);
    await this.takeType(FrameType.PING, tid);
  }

  close(): Promise<void> {
    this.socket.end();
    this.socket.destroySoon();
    return this.closed;
  }

  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

export function toOrder(frame: Frame): ReceivedOrder {
  const sections = decode(frame.payload) as WireSection[];
  const ids = new Set(sections.map((s) => s.id));
  if (ids.size !== 1 || typeof sections[0].id !== 'string') throw new Error(`ORDER sections carry ids ${[...ids]}`);
  return { tid: frame.tid, id: sections[0].id, sections };
}
