/**
 * The NGTT TLS listener (spec §2): mutual TLS against the configured CA, the device identity
 * from the verified client certificate only, then one DeviceSession per connection, handed over
 * through the DeviceRegistry so a device is served on one connection at a time.
 */
import net, { type AddressInfo, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { readDeviceIdentity } from '../pki/index.js';
import { NGTT_STREAM_ALPN } from '../protocol/index.js';
import type { DeviceRegistry } from './device-registry.js';
import { DeviceSession } from './device-session.js';
import { RateLimitedLog } from './rate-limited-log.js';
import type { Store } from './store/index.js';

export interface ServerTlsOptions {
  ca: string | Buffer | (string | Buffer)[];
  cert: string | Buffer;
  key: string | Buffer;
}

export interface NgttListenerOptions {
  tls: ServerTlsOptions;
  host: string;
  port: number;
  store: Store;
  registry: DeviceRegistry;
  window: number;
  idleTimeoutMs: number;
  maxFrameLength: number;
  admission: AdmissionLimits;
  logger: Logger;
}

/**
 * Admission control: what keeps half-open connections from locking devices out. A connection
 * over a limit is reset before any TLS work is spent on it; the device retries with backoff.
 */
export interface AdmissionLimits {
  /** TCP connections at once, handshaking ones included (keep it below the file-descriptor limit). */
  maxConnections: number;
  /** Connections still in the TLS handshake, from everyone together. */
  maxPendingHandshakes: number;
  /** Connections still in the TLS handshake from one source (an IPv4 address, an IPv6 /64). */
  maxPendingHandshakesPerSource: number;
  /** A connection that has not finished its TLS handshake by then is closed. */
  handshakeTimeoutMs: number;
}

export const DEFAULT_ADMISSION: Readonly<AdmissionLimits> = {
  maxConnections: 100_000,
  maxPendingHandshakes: 2_000,
  maxPendingHandshakesPerSource: 100,
  handshakeTimeoutMs: 10_000,
};

export type RefusalReason = 'max-connections' | 'max-handshakes' | 'max-handshakes-per-source' | 'shutting-down';

/** What the listener has seen, for metrics. Counters only grow; `pending*` and `connections` are now. */
export interface ListenerStats {
  connections: number;
  pendingHandshakes: number;
  handshakesCompleted: number;
  /** Handshakes that failed or timed out, by error code. */
  handshakesFailed: Map<string, number>;
  refused: Map<RefusalReason, number>;
}

export class NgttListener {
  /** Accepts TCP and applies admission control; admitted connections go on to `tlsServer`. */
  private readonly tcp: net.Server;
  /** Never listens itself: it is handed the admitted connections. */
  private readonly tlsServer: tls.Server;
  private readonly pending = new Set<Promise<void>>();
  private readonly sockets = new Set<TLSSocket>();
  /** Every TCP connection, handshaking ones included, so that close() can end them all. */
  private readonly rawSockets = new Set<Socket>();
  /** Connections in the TLS handshake, by `connectionKey`, with their source. */
  private readonly handshaking = new Map<string, string>();
  private readonly handshakingBySource = new Map<string, number>();
  private readonly refusalLog: RateLimitedLog;
  private readonly handshakeFailureLog: RateLimitedLog;
  readonly stats: ListenerStats = { connections: 0, pendingHandshakes: 0, handshakesCompleted: 0, handshakesFailed: new Map(), refused: new Map() };
  private closing = false;

  constructor(private readonly o: NgttListenerOptions) {
    const limits = o.admission;
    this.refusalLog = new RateLimitedLog(o.logger, 'connection refused by admission control');
    this.handshakeFailureLog = new RateLimitedLog(o.logger, 'TLS handshake refused');
    this.tlsServer = tls.createServer({
      ...o.tls,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.handshakeTimeoutMs,
      // A device offering it parses every frame it reads (frame-writer.ts); others offer nothing.
      ALPNProtocols: [NGTT_STREAM_ALPN],
    });
    this.tlsServer.on('secureConnection', (socket) => {
      this.handshakeDone(connectionKey(socket));
      this.stats.handshakesCompleted++;
      this.onConnection(socket);
    });
    this.tlsServer.on('tlsClientError', (err, socket) => {
      const code = (err as NodeJS.ErrnoException).code ?? 'TLS_ERROR';
      this.stats.handshakesFailed.set(code, (this.stats.handshakesFailed.get(code) ?? 0) + 1);
      this.handshakeFailureLog.note(code, { err: { message: err.message, code }, remote: socket.remoteAddress });
      // Node only reports a handshake timeout (ERR_TLS_HANDSHAKE_TIMEOUT) here; it does not close
      // the socket, so a client that never finishes its handshake would hold it for ever.
      socket.destroy();
    });
    this.tcp = net.createServer((socket) => this.admit(socket));
    // Over maxConnections Node closes the connection itself and says so with 'drop'.
    this.tcp.maxConnections = limits.maxConnections;
    this.tcp.on('drop', (data?: { remoteAddress?: string }) => this.refuse(null, 'max-connections', data?.remoteAddress));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(this.o.port, this.o.host, () => {
        this.tcp.off('error', reject);
        resolve((this.tcp.address() as AddressInfo).port);
      });
    });
  }

  private admit(socket: Socket): void {
    const limits = this.o.admission;
    const source = sourceOf(socket.remoteAddress);
    if (this.closing) return this.refuse(socket, 'shutting-down', source);
    if (this.handshaking.size >= limits.maxPendingHandshakes) return this.refuse(socket, 'max-handshakes', source);
    const fromSource = this.handshakingBySource.get(source) ?? 0;
    if (fromSource >= limits.maxPendingHandshakesPerSource) return this.refuse(socket, 'max-handshakes-per-source', source);

    const key = connectionKey(socket);
    this.handshaking.set(key, source);
    this.handshakingBySource.set(source, fromSource + 1);
    this.stats.pendingHandshakes = this.handshaking.size;
    this.rawSockets.add(socket);
    this.stats.connections = this.rawSockets.size;
    socket.once('close', () => {
      this.handshakeDone(key);
      this.rawSockets.delete(socket);
      this.stats.connections = this.rawSockets.size;
    });
    this.tlsServer.emit('connection', socket);
  }

  private handshakeDone(key: string): void {
    const source = this.handshaking.get(key);
    if (source === undefined) return;
    this.handshaking.delete(key);
    const left = (this.handshakingBySource.get(source) ?? 1) - 1;
    if (left > 0) this.handshakingBySource.set(source, left);
    else this.handshakingBySource.delete(source);
    this.stats.pendingHandshakes = this.handshaking.size;
  }

  private refuse(socket: Socket | null, reason: RefusalReason, source: string | undefined): void {
    this.stats.refused.set(reason, (this.stats.refused.get(reason) ?? 0) + 1);
    this.refusalLog.note(reason, { remote: source, limits: this.o.admission });
    // A reset, not a FIN: no TIME_WAIT kept for a client we do not want.
    if (socket) socket.resetAndDestroy();
  }

  private onConnection(socket: TLSSocket): void {
    // A handshake that finishes while we shut down would start a session nobody closes.
    if (this.closing) {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    let deviceId: string;
    try {
      // rejectUnauthorized has verified the chain; the identity comes from that certificate only.
      deviceId = readDeviceIdentity(socket.getPeerCertificate().raw).deviceId;
    } catch (e) {
      this.o.logger.warn({ remote, reason: (e as Error).message }, 'client certificate without a usable DeviceID; closing');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const logger = this.o.logger.child({ deviceId, remote });
    const session = new DeviceSession({
      deviceId,
      socket,
      store: this.o.store,
      window: this.o.window,
      idleTimeoutMs: this.o.idleTimeoutMs,
      maxFrameLength: this.o.maxFrameLength,
      logger,
      counters: this.o.registry.counters(deviceId),
      onClosed: (s) => this.o.registry.remove(s),
    });
    const handover = this.o.registry
      .handOver(deviceId, () => session.start())
      .catch((e) => {
        logger.error({ err: e }, 'could not start the session');
        socket.destroy();
      });
    this.pending.add(handover);
    void handover.finally(() => this.pending.delete(handover));
  }

  /** Stops accepting, closes every connection and waits until their orders are requeued. */
  async close(): Promise<void> {
    this.closing = true;
    const stopped = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    await Promise.allSettled([...this.pending]);
    await Promise.allSettled(this.o.registry.sessions().map((s) => s.close('server shutting down')));
    for (const socket of this.sockets) socket.destroy();
    for (const socket of this.rawSockets) socket.destroy();
    await stopped;
    this.refusalLog.close();
    this.handshakeFailureLog.close();
  }
}

/** One TCP connection, seen from its raw socket or from the TLS socket wrapping it. */
const connectionKey = (socket: Socket): string => `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;

/**
 * The source a per-source limit counts against: the IPv4 address, or the /64 of an IPv6 one
 * (one subscriber usually gets a whole /64, so single IPv6 addresses cost an attacker nothing).
 */
export function sourceOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1];
  if (net.isIPv6(address)) {
    const [head, tail = ''] = address.split('::');
    const left = head ? head.split(':') : [];
    const right = tail ? tail.split(':') : [];
    const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
    return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
  }
  return address;
}
