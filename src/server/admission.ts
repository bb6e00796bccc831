/**
 * Admission control for a device port (a tls.Server: the NGTT listener, the HTTPS device API):
 * what keeps half-open connections from locking devices out. Caps on connections and on
 * connections still in the TLS handshake (overall and per source), a handshake timeout, and a
 * connection over a limit reset before any TLS work is spent on it. Refusals and failed
 * handshakes are counted, and logged rate-limited: an attacker can trigger them at will.
 */
import net, { type Socket } from 'node:net';
import type tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { RateLimitedLog } from './rate-limited-log.js';

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

export type RefusalReason = 'max-connections' | 'max-handshakes' | 'max-handshakes-per-source' | 'shutting-down' | 'store-unavailable';

/** What a port has seen, for metrics. Counters only grow; `pendingHandshakes` and `connections` are now. */
export interface AdmissionStats {
  connections: number;
  pendingHandshakes: number;
  handshakesCompleted: number;
  /** Handshakes that failed or timed out, by error code. */
  handshakesFailed: Map<string, number>;
  refused: Map<RefusalReason, number>;
}

/** The TCP socket a TLSSocket wraps (Node keeps it as `_parent`; the same for server sockets). */
const rawOf = (socket: TLSSocket): Socket | undefined => (socket as TLSSocket & { _parent?: Socket })._parent;

export class Admission {
  readonly stats: AdmissionStats = { connections: 0, pendingHandshakes: 0, handshakesCompleted: 0, handshakesFailed: new Map(), refused: new Map() };
  /** Every admitted TCP connection, handshaking ones included, so that a shutdown can end them all. */
  readonly sockets = new Set<Socket>();
  /** Connections in the TLS handshake, with their source. */
  private readonly handshaking = new Map<Socket, string>();
  private readonly handshakingBySource = new Map<string, number>();
  private readonly refusedSockets = new WeakSet<Socket>();
  private readonly refusalLog: RateLimitedLog;
  private readonly handshakeFailureLog: RateLimitedLog;
  private closing = false;

  constructor(
    readonly limits: AdmissionLimits,
    logger: Logger,
    /** True while the store cannot keep what a device sends: refuse rather than drop (a device keeps it spooled). */
    private readonly storeUnavailable: () => boolean = () => false,
  ) {
    this.refusalLog = new RateLimitedLog(logger, 'connection refused by admission control');
    this.handshakeFailureLog = new RateLimitedLog(logger, 'TLS handshake refused');
  }

  /**
   * Puts the server behind admission control. Its TLS options must carry
   * `handshakeTimeout: limits.handshakeTimeoutMs`; call before it listens.
   */
  attach(server: tls.Server): void {
    // Over maxConnections Node closes the connection itself and says so with 'drop'.
    server.maxConnections = this.limits.maxConnections;
    server.on('drop', (data?: { remoteAddress?: string }) => this.refuse(null, 'max-connections', sourceOf(data?.remoteAddress)));
    // Before the TLS server's own listener wraps the socket: a refused one costs no TLS work.
    server.prependListener('connection', (socket: Socket) => this.admit(socket));
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      const raw = rawOf(socket);
      if (raw) this.handshakeDone(raw);
      this.stats.handshakesCompleted++;
    });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      // Node only reports a handshake timeout (ERR_TLS_HANDSHAKE_TIMEOUT) here; it does not close
      // the socket, so a client that never finishes its handshake would hold it for ever.
      socket.destroy();
      const raw = rawOf(socket);
      if (raw && this.refusedSockets.has(raw)) return; // our own reset, already counted
      const code = (err as NodeJS.ErrnoException).code ?? 'TLS_ERROR';
      this.stats.handshakesFailed.set(code, (this.stats.handshakesFailed.get(code) ?? 0) + 1);
      this.handshakeFailureLog.note(code, { err: { message: err.message, code }, remote: socket.remoteAddress ?? raw?.remoteAddress });
    });
  }

  /** From now on every new connection is refused. */
  stopAdmitting(): void {
    this.closing = true;
  }

  close(): void {
    this.closing = true;
    this.refusalLog.close();
    this.handshakeFailureLog.close();
  }

  private admit(socket: Socket): void {
    const source = sourceOf(socket.remoteAddress);
    if (this.closing) return this.refuse(socket, 'shutting-down', source);
    if (this.storeUnavailable()) return this.refuse(socket, 'store-unavailable', source);
    if (this.handshaking.size >= this.limits.maxPendingHandshakes) return this.refuse(socket, 'max-handshakes', source);
    const fromSource = this.handshakingBySource.get(source) ?? 0;
    if (fromSource >= this.limits.maxPendingHandshakesPerSource) return this.refuse(socket, 'max-handshakes-per-source', source);

    this.handshaking.set(socket, source);
    this.handshakingBySource.set(source, fromSource + 1);
    this.stats.pendingHandshakes = this.handshaking.size;
    this.sockets.add(socket);
    this.stats.connections = this.sockets.size;
    socket.once('close', () => {
      this.handshakeDone(socket);
      this.sockets.delete(socket);
      this.stats.connections = this.sockets.size;
    });
  }

  private handshakeDone(socket: Socket): void {
    const source = this.handshaking.get(socket);
    if (source === undefined) return;
    this.handshaking.delete(socket);
    const left = (this.handshakingBySource.get(source) ?? 1) - 1;
    if (left > 0) this.handshakingBySource.set(source, left);
    else this.handshakingBySource.delete(source);
    this.stats.pendingHandshakes = this.handshaking.size;
  }

  private refuse(socket: Socket | null, reason: RefusalReason, source: string): void {
    this.stats.refused.set(reason, (this.stats.refused.get(reason) ?? 0) + 1);
    this.refusalLog.note(reason, { remote: source, limits: this.limits });
    if (!socket) return;
    this.refusedSockets.add(socket);
    // A reset, not a FIN: no TIME_WAIT kept for a client we do not want.
    socket.resetAndDestroy();
  }
}

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
