/**
 * A loopback TCP proxy for fault injection: the device connects to the proxy, the proxy to the
 * server, and TLS runs end to end through it (the proxy never sees plaintext, verification stays
 * on). It can cut connections (after a byte budget or on demand), stall them (stop forwarding
 * while keeping both sockets open: only a keepalive notices), delay and fragment the bytes.
 */
import net, { type AddressInfo, type Socket } from 'node:net';

export interface FaultPolicy {
  /** Bytes (both directions together) a new connection may forward before it is cut; undefined: no cut. */
  cutAfterBytes?: () => number | undefined;
  /** Each chunk is held this long before it is forwarded (order kept). */
  delayMs?: number;
  /** Chunks are forwarded in pieces of at most this many bytes, one write each. */
  fragmentBytes?: number;
  /** New connections start stalled. */
  stall?: boolean;
  /** Called at each cut (to record what was going on at that moment). */
  onCut?: () => void;
}

export class ProxiedConnection {
  forwarded = 0;
  stalled = false;
  closed = false;
  private readonly budget: number | undefined;
  /** Forwarding is sequential per direction, so delays and fragments keep the byte order. */
  private readonly chains = { up: Promise.resolve(), down: Promise.resolve() };

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    private readonly proxy: FaultProxy,
  ) {
    this.budget = proxy.policy.cutAfterBytes?.();
    this.stalled = proxy.policy.stall ?? false;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.forward('up', chunk, upstream));
    upstream.on('data', (chunk: Buffer) => this.forward('down', chunk, client));
    for (const s of [client, upstream]) {
      s.on('error', () => {});
      s.on('close', () => this.close());
    }
    if (client.destroyed || upstream.destroyed) this.close();
    else if (this.stalled) this.stall();
    else this.resume();
  }

  /** Stops forwarding both ways; the sockets stay open and silent. */
  stall(): void {
    this.stalled = true;
    this.client.pause();
    this.upstream.pause();
  }

  resume(): void {
    this.stalled = false;
    this.client.resume();
    this.upstream.resume();
  }

  /** Drops both sides at once (the device and the server each see their own connection end). */
  cut(): void {
    if (this.closed) return;
    this.proxy.stats.cuts++;
    this.proxy.policy.onCut?.();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    this.upstream.destroy();
    this.proxy.connections.delete(this);
  }

  private forward(direction: 'up' | 'down', chunk: Buffer, to: Socket): void {
    if (this.closed) return;
    let data = chunk;
    if (this.budget !== undefined) {
      const left = this.budget - this.forwarded;
      if (left <= 0) return this.cut();
      if (data.length >= left) {
        // Part of the chunk goes through, then the link dies: a cut inside a frame.
        data = data.subarray(0, left);
        this.forwarded += data.length;
        this.chains[direction] = this.chains[direction].then(() => this.send(data, to)).then(() => this.cut());
        return;
      }
    }
    this.forwarded += data.length;
    this.chains[direction] = this.chains[direction].then(() => this.send(data, to));
  }

  private async send(data: Buffer, to: Socket): Promise<void> {
    const { delayMs, fragmentBytes } = this.proxy.policy;
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const step = fragmentBytes && fragmentBytes > 0 ? fragmentBytes : data.length;
    for (let at = 0; at < data.length; at += step) {
      if (this.closed || to.destroyed) return;
      to.write(data.subarray(at, at + step));
      if (step < data.length) await new Promise((r) => setImmediate(r));
    }
  }
}

export class FaultProxy {
  policy: FaultPolicy = {};
  readonly connections = new Set<ProxiedConnection>();
  readonly stats = { connections: 0, cuts: 0 };
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static start(targetPort: number, policy: FaultPolicy = {}): Promise<FaultProxy> {
    return new Promise((resolve, reject) => {
      let proxy!: FaultProxy;
      const server = net.createServer((client) => {
        client.pause();
        const upstream = net.connect({ host: '127.0.0.1', port: proxy.target });
        upstream.once('connect', () => {
          proxy.stats.connections++;
          proxy.connections.add(new ProxiedConnection(client, upstream, proxy));
        });
        upstream.once('error', () => client.destroy());
        client.once('error', () => upstream.destroy());
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        proxy = new FaultProxy(server, (server.address() as AddressInfo).port);
        proxy.target = targetPort;
        proxy.policy = policy;
        resolve(proxy);
      });
    });
  }

  /** Where new connections go (a restarted server may listen elsewhere). */
  target = 0;

  cutAll(): void {
    for (const c of [...this.connections]) c.cut();
  }

  stallAll(): void {
    for (const c of this.connections) c.stall();
  }

  close(): Promise<void> {
    this.cutAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
