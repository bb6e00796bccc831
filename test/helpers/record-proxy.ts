/**
 * A loopback TCP proxy that reads the TLS record headers going from the server to the client
 * (content type, length) without touching the bytes: TLS runs end to end through it. With
 * TLS 1.2 every application-data record (type 23) is application data, so the records the server
 * sent can be counted and sized from outside.
 */
import net, { type AddressInfo, type Socket } from 'node:net';

export interface TlsRecord {
  type: number;
  length: number;
}

export const APPLICATION_DATA = 23;

export class RecordProxy {
  /** Records from the server to the client, in order, per connection. */
  readonly connections: TlsRecord[][] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<Socket>();
  private waiters: (() => void)[] = [];

  private constructor(private readonly target: number) {
    this.server = net.createServer((client) => this.onClient(client));
  }

  static async start(targetPort: number): Promise<RecordProxy> {
    const proxy = new RecordProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Application-data records of connection `i` (default the last one). */
  applicationData(i = this.connections.length - 1): TlsRecord[] {
    return (this.connections[i] ?? []).filter((r) => r.type === APPLICATION_DATA);
  }

  /** Resolves once `cond` holds for the records seen so far. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private onClient(client: Socket): void {
    const upstream = net.connect(this.target, '127.0.0.1');
    const records: TlsRecord[] = [];
    this.connections.push(records);
    let pending = Buffer.alloc(0);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        records.push({ type: pending[0], length: pending.readUInt16BE(3) });
        pending = pending.subarray(5 + pending.readUInt16BE(3));
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
  }
}
